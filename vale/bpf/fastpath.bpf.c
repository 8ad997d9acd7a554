// SPDX-License-Identifier: (BSD-2-Clause OR GPL-2.0)
/* vale's kernel fast path: known unicast between interface ports, redirected at tc ingress.
 *
 * - vale_tc, at a port's interface's tc ingress (tcx or clsact, direct action), redirects
 *   the frames vale would forward to one known port, drops those vale would drop (own
 *   port, too long for the destination), and counts both. Every other frame goes up to
 *   vale: into the ingress of the port's upcall device, a dummy interface where vale's
 *   packet socket of the port listens. Frames for the host (to the interface's own MAC,
 *   broadcast, multicast) go up as a copy and on to the interface's own stack too, as
 *   they did before there was a program.
 * - vale_upcall, at the upcall device's tc ingress, drops everything: packet sockets see
 *   a frame before tc ingress does, so vale has it by then, and the dummy's own stack
 *   must not see frames a second time.
 *
 * vale's socket is on the upcall device, not on the port's interface, because a packet
 * socket on an interface sees every frame before tc ingress does: each redirected frame
 * would cost a tap (and a filter to keep it out of vale's ring), about a sixth of the
 * fast path's rate.
 *
 * A frame takes the fast path only when every rule vale applies would give the same
 * answer: the port has the fast path on, the frame is untagged unicast to another MAC than
 * the interface's own, its source is known on this port (unknown and moved sources go up,
 * so learning and move damping see them), its destination is known on a port that takes
 * redirects. Everything else is vale's to decide. Maps and their layouts: fastpath.h.
 */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "fastpath.h"

/* Entries are put in by vale only, a few at a time: no preallocation, so a switch's maps
 * cost what they hold. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VALE_BPF_PORTS);
	__type(key, __u32);
	__type(value, struct vale_bpf_port);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vale_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, VALE_BPF_PORTS);
	__type(key, __u32);
	__type(value, struct vale_bpf_egress);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vale_egress SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VALE_BPF_MACS);
	__type(key, struct vale_bpf_mac);
	__type(value, struct vale_bpf_src);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vale_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, VALE_BPF_MACS);
	__type(key, struct vale_bpf_mac);
	__type(value, struct vale_bpf_dst);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vale_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VALE_BPF_PORTS);
	__type(key, __u32);
	__type(value, struct vale_bpf_stats);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vale_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VALE_BPF_PASSES);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} vale_passed SEC(".maps");

enum action {
	ACT_PASS,               /* up to vale: reason is a VALE_BPF_PASS_* */
	ACT_REDIRECT,           /* to dst */
	ACT_DROP,               /* reason is a VALE_BPF_DROP_* */
};

struct decision {
	__u32 reason;
	__u32 segs;             /* wire frames: 1, or a GSO frame's segments */
	struct vale_bpf_port *in;
	struct vale_bpf_src *src;
	struct vale_bpf_dst *dst;
};

/* The frame's Ethernet header: in the linear part (direct reads, no helper call), else
 * copied. */
static __always_inline int load_eth(struct __sk_buff *skb, struct ethhdr *eth)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;

	if (data + sizeof(*eth) <= end) {
		__builtin_memcpy(eth, data, sizeof(*eth));
		return 0;
	}
	return bpf_skb_load_bytes(skb, 0, eth, sizeof(*eth));
}

/* Bytes before a GSO frame's payload in each segment (Ethernet, IP and TCP or UDP
 * headers), or 0 when they are not plain IPv4/IPv6 with TCP or UDP. A tunnel's GSO frame
 * is measured by its outer headers (the bridge checks no GSO frame at all). */
static __always_inline __u32 gso_headers(struct __sk_buff *skb, __be16 proto)
{
	__u32 l3, off = sizeof(struct ethhdr);
	__u8 l4proto, byte;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0 || ip.ihl < 5)
			return 0;
		l3 = ip.ihl * 4;
		l4proto = ip.protocol;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;

		/* Extension headers are not walked: such frames go up. */
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return 0;
		l3 = sizeof(ip6);
		l4proto = ip6.nexthdr;
	} else {
		return 0;
	}
	off += l3;
	if (l4proto == IPPROTO_UDP)
		return off + 8;
	if (l4proto != IPPROTO_TCP)
		return 0;
	/* The TCP header's length: the data offset, in words, in the high nibble of byte 12. */
	if (bpf_skb_load_bytes(skb, off + 12, &byte, 1) < 0 || (byte >> 4) < 5)
		return 0;
	return off + (byte >> 4) * 4;
}

/* What vale would do with this frame, decided from the maps alone. */
static __always_inline enum action decide(struct __sk_buff *skb, struct decision *d)
{
	struct vale_bpf_mac key = {};
	struct vale_bpf_egress *out;
	struct ethhdr eth;
	__u32 ifindex = skb->ifindex, len = skb->len, gso_size, headers, max;

	d->segs = 1;
	/* Set on every path, redirects too: left undefined, clang may fill it with part of a
	 * pointer, which the verifier refuses without CAP_PERFMON. */
	d->reason = 0;
	d->in = bpf_map_lookup_elem(&vale_ports, &ifindex);
	if (!d->in || !(d->in->flags & VALE_BPF_PORT_RX)) {
		d->reason = VALE_BPF_PASS_PORT;
		return ACT_PASS;
	}
	if (load_eth(skb, &eth) < 0) {
		d->reason = VALE_BPF_PASS_RUNT;
		return ACT_PASS;
	}
	/* The kernel takes an outer tag out before taps and tc see the frame: that one is in
	 * vlan_present, an inner or 802.1ad one is still in the frame. */
	if (skb->vlan_present || eth.h_proto == bpf_htons(ETH_P_8021Q) ||
	    eth.h_proto == bpf_htons(ETH_P_8021AD)) {
		d->reason = VALE_BPF_PASS_VLAN;
		return ACT_PASS;
	}
	if (eth.h_dest[0] & 1) {
		d->reason = VALE_BPF_PASS_GROUP;
		return ACT_PASS;
	}
	/* vale drops frames for the interface's own host (its `host` reason), counted there. */
	if (skb->pkt_type == PACKET_HOST) {
		d->reason = VALE_BPF_PASS_HOST;
		return ACT_PASS;
	}

	__builtin_memcpy(key.mac, eth.h_source, ETH_ALEN);
	d->src = bpf_map_lookup_elem(&vale_src, &key);
	if (!d->src) {
		d->reason = VALE_BPF_PASS_SRC_UNKNOWN;
		return ACT_PASS;
	}
	if (d->src->port != d->in->port) {
		d->reason = VALE_BPF_PASS_SRC_MOVED;
		return ACT_PASS;
	}

	__builtin_memcpy(key.mac, eth.h_dest, ETH_ALEN);
	d->dst = bpf_map_lookup_elem(&vale_dst, &key);
	if (!d->dst) {
		d->reason = VALE_BPF_PASS_DST_UNKNOWN;
		return ACT_PASS;
	}
	if (d->dst->port == d->in->port) {
		d->reason = VALE_BPF_DROP_OWN_PORT;
		return ACT_DROP;
	}
	/* The destination port's own entry has the last word: a port whose capture or mirror
	 * starts, or that goes down, loses its TX flag and every entry for it goes up at
	 * once; an entry left behind for an interface now on another port, too. */
	out = bpf_map_lookup_elem(&vale_egress, &d->dst->port);
	if (!out || !(out->flags & VALE_BPF_PORT_TX) || out->ifindex != d->dst->ifindex) {
		d->reason = VALE_BPF_PASS_DST_PORT;
		return ACT_PASS;
	}

	/* Redirects skip the kernel's MTU checks, so they are made here, as vale and the
	 * bridge make them: a frame is too long beyond MTU + 18. A GSO frame is whole segments
	 * to be: each (its headers and gso_size bytes) must fit; one that may not, or whose
	 * headers are not plain, goes up for vale to decide (vale, as the bridge, checks no GSO
	 * frame against an MTU). */
	max = d->dst->mtu + VALE_BPF_FRAME_SLACK;
	gso_size = skb->gso_size;
	if (!gso_size) {
		if (len > max) {
			d->reason = VALE_BPF_DROP_MTU;
			return ACT_DROP;
		}
		return ACT_REDIRECT;
	}
	headers = gso_headers(skb, eth.h_proto);
	if (!headers || headers >= len || headers + gso_size > max) {
		d->reason = VALE_BPF_PASS_GSO;
		return ACT_PASS;
	}
	/* Senders the kernel does not trust (a VM's virtio-net) leave gso_segs for later. */
	d->segs = skb->gso_segs;
	if (!d->segs)
		d->segs = (len - headers + gso_size - 1) / gso_size;
	return ACT_REDIRECT;
}

static __always_inline void count_passed(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&vale_passed, &reason);

	if (n)
		*n += 1;
}

/* A frame for vale: into the port's upcall device (its ingress, where vale's socket
 * listens). Those the interface's own stack may want too (to its MAC, broadcast,
 * multicast: the kernel set pkt_type by the interface's MAC) go up as a copy, and on.
 * A port without an upcall device (in vale_ports while it is being set up or taken
 * away) lets every frame go on, to vale's socket on the interface itself. Not TC_ACT_OK:
 * TC_ACT_UNSPEC (tcx's TCX_NEXT) lets any program or filter after this one see the
 * frame too, then it goes on as if none had. */
static __always_inline int go_up(struct __sk_buff *skb, const struct vale_bpf_port *in)
{
	if (!in || !in->upcall)
		return TC_ACT_UNSPEC;
	if (skb->pkt_type != PACKET_OTHERHOST) {
		bpf_clone_redirect(skb, in->upcall, BPF_F_INGRESS);
		return TC_ACT_UNSPEC;
	}
	return bpf_redirect(in->upcall, BPF_F_INGRESS);
}

SEC("tc")
int vale_tc(struct __sk_buff *skb)
{
	struct vale_bpf_stats *rx, *tx;
	struct decision d;
	enum action act;
	__u64 now;

	act = decide(skb, &d);
	if (act == ACT_PASS) {
		count_passed(d.reason);
		return go_up(skb, d.in);
	}

	/* The source was seen: once a second is enough for ageing, and spares the entry's
	 * cache line a write per frame; so is the coarse clock (a tick behind at most),
	 * which costs less to read. */
	now = bpf_ktime_get_coarse_ns();
	if (now - d.src->last_seen_ns > VALE_BPF_SEEN_NS)
		d.src->last_seen_ns = now;

	rx = bpf_map_lookup_elem(&vale_stats, &d.in->port);
	if (rx) {
		rx->rx_packets += d.segs;
		rx->rx_bytes += skb->len;
	}
	if (act == ACT_DROP) {
		/* Counted where vale counts them: own-port drops on the source, too long ones
		 * on the destination. */
		if (d.reason == VALE_BPF_DROP_OWN_PORT) {
			if (rx)
				rx->drops[VALE_BPF_DROP_OWN_PORT] += d.segs;
		} else {
			tx = bpf_map_lookup_elem(&vale_stats, &d.dst->port);
			if (tx)
				tx->drops[VALE_BPF_DROP_MTU] += d.segs;
		}
		return TC_ACT_SHOT;
	}
	tx = bpf_map_lookup_elem(&vale_stats, &d.dst->port);
	if (tx) {
		tx->tx_packets += d.segs;
		tx->tx_bytes += skb->len;
	}
	if (d.dst->flags & VALE_BPF_DST_PEER)
		return bpf_redirect_peer(d.dst->ifindex, 0);
	return bpf_redirect(d.dst->ifindex, 0);
}

/* The upcall device's ingress: vale's packet socket has had every frame by now. */
SEC("tc")
int vale_upcall(struct __sk_buff *skb)
{
	return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
