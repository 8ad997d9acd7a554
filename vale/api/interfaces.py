"""Interfaces valed creates and owns (valectl create / remove): TAPs it holds open,
persistent TAPs for VMs, veth pairs whose far end may live in another namespace, the
sockets of vhost-user (VMs) and memif (programs) ports. Made at create, made again at
start, deleted at remove."""

from __future__ import annotations

import grp
import logging
import os
import pwd
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vale import memif, netlink, settings, tap, vhost
from vale.api.protocol import ApiError, arg
from vale.names import check_port_name, check_switch_name, key_to_mac, mac_to_key, random_mac
from vale.state import (
    KIND_FIELDS,
    VXLAN_PORT,
    Interface,
    SwitchConfig,
    check_ip,
    check_memif_id,
    check_memif_secret,
    check_socket_path,
    check_udp_port,
    check_vhost_mode,
    check_vni,
)

if TYPE_CHECKING:
    from vale.api.topology import Topology

log = logging.getLogger("vale.api")


def exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def open_made_tap(name: str, made: Interface) -> int:
    """Make a TAP valed holds, as it was: a TAP dies with us, and is made again with the
    MAC it had (with a new one, hosts that knew it would send into the void until their
    neighbour entries expire). Returns its open fd."""
    fd = tap.open_tap(name)
    try:
        netlink.set_up_tap(name, made.netns or None, made.address, made.mac)
    except BaseException:
        os.close(fd)
        raise
    return fd


class InterfaceOps:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo

    def ops(self) -> dict[str, Any]:
        return {"create": self.op_create, "remove": self.op_remove}

    def op_create(self, args: dict[str, Any]) -> dict[str, Any]:
        """A TAP or a veth pair made and owned by the daemon, attached to a switch."""
        name = check_port_name(arg(args, "name", str))
        kind = arg(args, "kind", str)
        switch = check_switch_name(arg(args, "switch", str, "vale0"))
        port_settings = settings.parse("attach", arg(args, "settings", dict, {}))
        netns = arg(args, "netns", str, None)
        address = arg(args, "address", str, None)
        mac = _tap_mac(kind, arg(args, "mac", str, None), arg(args, "lock_mac", bool, False))
        if kind not in KIND_FIELDS:
            raise ApiError("invalid", f"cannot create a {kind!r}: tap, persistent_tap, veth, "
                                      "vhost_user, memif or vxlan")
        if name in self.topo.desired.interfaces or self.topo.owner_of(name):
            raise ApiError("already_attached", f"{name} is already in use by valed")
        self.topo.check_new_port(switch, port_settings)
        if exists(name):
            raise ApiError("exists", f"an interface named {name} exists already")
        if kind in ("persistent_tap", "vhost_user", "memif", "vxlan") and (
                netns is not None or address is not None):
            raise ApiError("invalid", f"a {kind.replace('_', ' ')} port takes no namespace "
                                      "and no address")
        if kind == "tap" and address is not None and netns is None:
            raise ApiError("invalid", "a TAP gets its address in its namespace: give netns "
                                      "too (for an address on this host, make a veth)")
        if netns is not None:
            netlink.check_netns(netns)
        if address is not None:
            netlink.check_address(address)
        record = Interface(kind, switch)
        warnings: list[str] = []
        if kind == "veth":
            peer = check_port_name(arg(args, "peer", str, None) or f"{name[:12]}-p")
            if exists(peer) and netns is None:
                raise ApiError("exists", f"an interface named {peer} exists already")
            if netns is None and peer in self.topo.desired.switches.get(
                    switch, SwitchConfig()).ports:
                raise ApiError("loop", f"{peer} is a port of {switch}: {name} and its own "
                               "peer on one switch make a loop, every flood going round "
                               "and round")
            record.peer, record.netns, record.address = peer, netns, address
            netlink.create_veth(name, peer, netns, address)
        elif kind == "persistent_tap":
            record.owner = arg(args, "owner", str, None)
            record.group = arg(args, "group", str, None)
            tap.make_persistent_tap(name, uid_of(record.owner), gid_of(record.group))
        elif kind in ("vhost_user", "memif"):
            record.owner = arg(args, "owner", str, None)
            record.group = arg(args, "group", str, None)
            uid_of(record.owner), gid_of(record.group)          # they exist
            default = (vhost.socket_path if kind == "vhost_user" else memif.socket_path)(name)
            try:
                record.path = check_socket_path(arg(args, "path", str, None) or default)
                if kind == "vhost_user":
                    record.mode = check_vhost_mode(arg(args, "mode", str, "server"))
                else:
                    record.iface_id = check_memif_id(arg(args, "id", int, 0))
                    secret = arg(args, "secret", str, None)
                    record.secret = None if secret is None else check_memif_secret(secret)
            except ValueError as exc:
                raise ApiError("invalid", str(exc)) from None
            if any(made.path == record.path for made in self.topo.desired.interfaces.values()):
                raise ApiError("exists", f"another port has the socket {record.path}")
        elif kind == "vxlan":
            try:
                record.vni = check_vni(arg(args, "vni", int))
                record.remote = check_ip(arg(args, "remote", str))
                local = arg(args, "local", str, None)
                record.local = None if local is None else check_ip(local)
                record.dstport = check_udp_port(arg(args, "dstport", int, VXLAN_PORT))
            except ValueError as exc:
                raise ApiError("invalid", str(exc)) from None
            made = make_vxlan(name, record)
            warnings.extend([made.warning] if made.warning else [])
        else:
            record.netns, record.address, record.mac = netns, address, mac or random_mac()
        if arg(args, "lock_mac", bool, False):
            # The port takes frames from that MAC only (its allowed_macs): a VM or a
            # namespace behind the TAP cannot send as anyone else.
            port_settings["allowed_macs"] = [record.mac or mac]
        self.topo.desired.interfaces[name] = record
        try:
            self.topo.add_port(switch, name, port_settings)
        except BaseException:
            del self.topo.desired.interfaces[name]
            destroy(name, record)
            raise
        log.info("created %s %s on %s", kind, name, switch)
        summary = self.topo.port_summary(switch, name)
        return {**summary, "warnings": warnings} if warnings else summary

    def op_remove(self, args: dict[str, Any]) -> None:
        name = check_port_name(arg(args, "name", str))
        record = self.topo.desired.interfaces.get(name)
        if record is None:
            raise ApiError("refused", f"{name} was not made by valed: valectl remove deletes "
                           "only interfaces valectl create made (detach it instead)")
        switch = self.topo.owner_of(name)
        if switch is not None:
            self.topo.remove_port(switch, name)
        del self.topo.desired.interfaces[name]
        destroy(name, record)
        log.info("removed %s", name)

    def make_again(self) -> None:
        """At start: make the veths, persistent TAPs and VXLAN devices that are gone (a
        TAP valed holds is made when its port comes up)."""
        for name, record in self.topo.desired.interfaces.items():
            if exists(name):
                continue
            try:
                if record.kind == "veth":
                    assert record.peer is not None          # the loader checked
                    netlink.create_veth(name, record.peer, record.netns, record.address)
                elif record.kind == "persistent_tap":
                    tap.make_persistent_tap(name, uid_of(record.owner), gid_of(record.group))
                elif record.kind == "vxlan":
                    make_vxlan(name, record)
            except (OSError, ValueError, ApiError) as exc:
                log.error("cannot make %s again: %s", name, exc)

    def settle_tap_macs(self) -> bool:
        """Every TAP of ours gets a usable MAC to be made with: records saved before MACs
        were kept have none, and a hand-edited one may be malformed, a group address or
        zero, which the kernel would refuse at every try. Returns whether any changed."""
        changed = False
        for name, record in self.topo.desired.interfaces.items():
            if record.kind != "tap":
                continue
            mac = record.mac
            try:
                key = mac_to_key(mac)
                usable = key != 0 and not key & 1
            except ValueError:
                usable = False
            if usable and mac == key_to_mac(key):
                continue
            record.mac = key_to_mac(key) if usable else random_mac()
            if mac is not None and not usable:
                log.error("%s: saved MAC %r is not a unicast address; it gets %s", name,
                          mac, record.mac)
            changed = True
        return changed


def _tap_mac(kind: str, mac: str | None, lock: bool) -> str | None:
    """create's MAC, canonical: a TAP valed holds is made with it; a persistent TAP's
    is the VM's, which lock_mac needs."""
    if (mac is not None or lock) and kind not in ("tap", "persistent_tap"):
        raise ApiError("invalid", "mac and lock_mac go with a TAP")
    if mac is not None:
        try:
            key = mac_to_key(mac)
        except ValueError as exc:
            raise ApiError("invalid", str(exc)) from None
        if key == 0 or key & 1:
            raise ApiError("invalid", f"{mac} is not a unicast MAC")
        mac = key_to_mac(key)
    if lock and kind == "persistent_tap" and mac is None:
        raise ApiError("invalid", "lock_mac on a persistent TAP needs the VM's mac")
    return mac


def make_vxlan(name: str, record: Interface) -> netlink.Vxlan:
    """The kernel's VXLAN device for `record`; its MTU warning, if any, logged."""
    assert record.vni is not None and record.remote is not None
    try:
        made = netlink.create_vxlan(name, record.vni, record.remote, record.local,
                                    record.dstport or VXLAN_PORT)
    except OSError as exc:
        raise ApiError("invalid", f"cannot make VXLAN {name}: {exc.strerror or exc}") from None
    if made.warning:
        log.warning("%s", made.warning)
    return made


def destroy(name: str, record: Interface) -> None:
    """Delete an interface the daemon made (a TAP it held is gone with its fd)."""
    if record.kind in ("veth", "vxlan"):
        netlink.delete_link(name)
    elif record.kind == "persistent_tap":
        tap.remove_persistent_tap(name)


def uid_of(owner: str | None) -> int | None:
    if owner is None:
        return None
    try:
        return int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise ApiError("invalid", f"no user {owner!r}") from None


def gid_of(group: str | None) -> int | None:
    if group is None:
        return None
    try:
        return int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ApiError("invalid", f"no group {group!r}") from None
