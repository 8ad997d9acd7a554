# 802.1Q VLANs: which VLAN a received frame travels in, and the tag it leaves with.
#
# Inside the switch a frame's tag is never in its data: a tag in the data is taken out on
# the way in (the MAC addresses move 4 bytes on), as the kernel does for packet sockets,
# and desc.vlan_* hold it. desc.vlan is the VLAN the frame travels in, from the ingress
# port's mode. On the way out each destination's mode says whether the frame is tagged:
# - none: tags as they came; a frame of VLAN v > 0 that came untagged gets a tag of v.
#   Untagged frames of such a port are VLAN 0, which no access or trunk port carries.
# - access: one VLAN; untagged frames (and priority-tagged, VLAN 0) join it; frames
#   tagged with it are taken too; it sends untagged.
# - trunk: frames tagged with a VLAN of its set; untagged and priority-tagged frames join
#   the native VLAN if it has one; it sends its native VLAN untagged, the rest tagged.
# Dropped and counted as `vlan`: a tag of VLAN 4095 (reserved) on any port; on an access
# or trunk port a frame with two tags, a tagged frame of a VLAN it does not carry, an
# untagged one on a trunk with no native VLAN.

cdef enum:
    VLAN_HLEN = 4
    VLAN_VID_MASK = 0x0FFF
    VLAN_RESERVED = 4095
    TAG_8021Q_LE = 0x0081       # the tag types as a little-endian load of their bytes
    TAG_8021AD_LE = 0xA888


cdef inline bint is_tag_type(const char *p) noexcept nogil:
    cdef uint16_t etype
    memcpy(&etype, p, 2)
    return etype == TAG_8021Q_LE or etype == TAG_8021AD_LE


cdef inline bint carries(const vale_port *p, uint32_t vlan) noexcept nogil:
    return (p.vlans[vlan >> 6] >> (vlan & 63)) & 1


cdef inline void pull_tag(vale_desc *d) noexcept nogil:
    """Take the tag after the MAC addresses out of the frame into desc.vlan_*: the MAC
    addresses move 4 bytes on, over it. An offload header's offsets move with them."""
    d.vlan_tpid = load_be16(d.data + 12)
    d.vlan_tci = load_be16(d.data + 14)
    memmove(d.data + VLAN_HLEN, d.data, 12)
    d.data += VLAN_HLEN
    d.len -= VLAN_HLEN
    d.flags |= FRAME_VLAN
    if d.flags & FRAME_VNET:
        if d.vnet.flags & VNET_NEEDS_CSUM:
            d.vnet.csum_start -= VLAN_HLEN
        if d.vnet.hdr_len >= VLAN_HLEN:
            d.vnet.hdr_len -= VLAN_HLEN


cdef inline int vlan_ingress(const vale_port *src, vale_desc *d, bint vlans) noexcept nogil:
    """Set d.vlan from src's mode; -1 when the frame must be dropped (`vlan`). The frame
    is a whole Ethernet header or longer. vlans: whether VLANs are on (a port of the
    switch has a mode); while none has, the switch ignores them, as the Linux bridge
    without vlan_filtering: every frame is keyed in VLAN 0 and keeps its tags as they
    came. Then d.vlan stays as the port's take set it: the VLAN of a tag the kernel took
    off (so that it goes back on), else 0."""
    if not vlans:
        return 0
    if vale_likely(not (d.flags & FRAME_VLAN) and not is_tag_type(d.data + 12)):
        d.vlan = src.native
        return src.untagged_ok
    return vlan_tagged(src, d)


cdef int vlan_tagged(const vale_port *src, vale_desc *d) noexcept nogil:
    """vlan_ingress for a frame with a tag, in its data or taken off by the kernel."""
    cdef uint32_t vid
    if not (d.flags & FRAME_VLAN):
        if d.len < VALE_ETH_HLEN + VLAN_HLEN:
            return -1
        pull_tag(d)
    vid = d.vlan_tci & VLAN_VID_MASK
    if vid == VLAN_RESERVED:
        return -1
    if src.vlan_mode == VLAN_NONE:
        d.vlan = vid
        return 0
    if d.len >= VALE_ETH_HLEN and is_tag_type(d.data + 12):
        return -1                       # two tags: not for a VLAN-aware port
    if vid == 0:                        # priority-tagged: as untagged, the tag goes
        d.flags &= ~(<uint32_t>FRAME_VLAN)
        d.vlan = src.native
        return src.untagged_ok
    d.vlan = vid
    return 0 if carries(src, vid) else -1


cdef inline uint32_t egress_tag(const vale_desc *d, const vale_port *dst) noexcept nogil:
    """The tag a frame leaves dst with, as TPID << 16 | TCI; 0 for none."""
    if d.vlan == dst.native and (dst.vlan_mode != VLAN_NONE or not (d.flags & FRAME_VLAN)):
        return 0
    if (d.flags & FRAME_VLAN) and (d.vlan_tci & VLAN_VID_MASK) == d.vlan:
        return (<uint32_t>d.vlan_tpid << 16) | d.vlan_tci     # its own, priority kept
    return (<uint32_t>VALE_TPID_8021Q << 16) | d.vlan


cdef inline void write_tag(char *out, uint32_t tag) noexcept nogil:
    store_be16(out, tag >> 16)
    store_be16(out + 2, tag & 0xFFFF)


cdef inline void copy_tagged(char *out, const char *data, uint32_t length,
                             uint32_t tag) noexcept nogil:
    """Copy a frame with a tag put back after the MAC addresses."""
    memcpy(out, data, 12)
    write_tag(out + 12, tag)
    memcpy(out + 12 + VLAN_HLEN, data + 12, length - 12)


cdef void port_set_vlans(vale_switch *sw, vale_port *p, VlanMode mode, uint16_t native,
                         const uint64_t *vlans) noexcept nogil:
    """Give p a VLAN mode; vlans: the set it carries (ignored for VLAN_NONE, which carries
    them all)."""
    cdef uint32_t w
    if (p.vlan_mode != VLAN_NONE) != (mode != VLAN_NONE):
        if mode != VLAN_NONE:
            sw.vlan_ports += 1
        else:
            sw.vlan_ports -= 1
        if sw.vlan_ports == (1 if mode != VLAN_NONE else 0):
            fdb_remove_port(sw, VALE_NO_PORT, False)    # VLANs on or off: keys change
    p.vlan_mode = mode
    p.native = native if mode != VLAN_NONE else 0
    p.untagged_ok = 0 if mode == VLAN_NONE or native != 0 else -1
    for w in range(VALE_VLAN_WORDS):
        p.vlans[w] = vlans[w] if mode != VLAN_NONE else ~(<uint64_t>0)
    if mode != VLAN_NONE:
        p.vlans[0] &= ~(<uint64_t>1)            # VLAN 0 is the untagged world of none ports
        if native:
            p.vlans[native >> 6] |= <uint64_t>1 << (native & 63)
    p.vlans[VALE_VLAN_WORDS - 1] &= ~(<uint64_t>1 << 63)     # 4095, reserved
