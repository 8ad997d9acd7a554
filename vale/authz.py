"""Who may do what on the control socket. A caller's role comes from its credentials
(SO_PEERCRED: uid, gid, pid) and the groups of its uid, read when it connects; RULES says,
for every operation, the least role it needs and which of its arguments need root. The
API's dispatcher and the daemon's capture path both ask `authorize()`. The reasons are in
docs/security.md ("Roles on the control socket"), whose table is `table()`.

The line drawn: an operator configures the switches, and nothing beyond them. No request
from a non-root client may change this host's own networking (an address or route in
valed's namespace, an interface it was not granted, the uplink), reach a namespace it was
not granted, read traffic without the capture grant, or hand anyone a raw frame device."""

from __future__ import annotations

import argparse
import enum
import fnmatch
import grp
import os
import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vale import memif, vhost
from vale.api.protocol import ApiError
from vale.state import Interface, State


class Role(enum.IntEnum):
    NONE = 0            # connected, but in no role's group: `version` only
    READER = 1          # reads the configuration and the counters
    OPERATOR = 2        # configures the switches (RULES: not beyond them)
    ROOT = 3            # uid 0, or valed's own uid: anything

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Caller:
    """Who sent a request: from SO_PEERCRED when the connection was made."""
    uid: int
    pid: int
    role: Role
    capture: bool = False       # may read frames: capture, mirror_add

    def __str__(self) -> str:
        grant = ", capture" if self.capture and self.role is not Role.ROOT else ""
        return f"uid {self.uid} pid {self.pid} ({self.role}{grant})"


def internal_caller() -> Caller:
    """valed itself, or a test driving the Api in its own process."""
    return Caller(os.geteuid(), os.getpid(), Role.ROOT, True)


def groups_of(uid: int, gid: int) -> set[int]:
    """The gid the peer connected with, and every group its user is a member of (as the
    group database says now: a process that dropped supplementary groups keeps the role
    they give, one added to a group since gets it at its next connection)."""
    groups = {gid}
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:                # a uid without a name (a container's): its gid only
        return groups
    try:
        groups.update(os.getgrouplist(name, gid))
    except OSError:                 # the group database failed us: the gid alone
        pass
    return groups


@dataclass(frozen=True)
class Grants:
    """The daemon's settings on who gets what (valed --reader-group, --operator-group,
    --capture-group, --operator-netns, --operator-interfaces)."""
    reader_gids: frozenset[int] = frozenset()
    operator_gids: frozenset[int] = frozenset()
    capture_gids: frozenset[int] = frozenset()
    netns: frozenset[str] = frozenset()         # namespaces operators may put interfaces in
    interfaces: tuple[str, ...] = ()            # fnmatch patterns: what operators may attach
    root_uids: frozenset[int] = field(default_factory=lambda: frozenset({0, os.geteuid()}))

    def caller(self, uid: int, gid: int, pid: int) -> Caller:
        if uid in self.root_uids:
            return Caller(uid, pid, Role.ROOT, True)
        groups = groups_of(uid, gid)
        capture = bool(groups & self.capture_gids)
        if groups & self.operator_gids:
            role = Role.OPERATOR
        elif capture or groups & self.reader_gids:
            role = Role.READER
        else:
            role = Role.NONE
        return Caller(uid, pid, role, capture)

    def may_attach(self, ifname: str) -> bool:
        return any(fnmatch.fnmatchcase(ifname, pattern) for pattern in self.interfaces)


# -- argument rules: each returns what in the request needs root and why, or None ---------

Check = Callable[[Mapping[str, Any], Grants, State], "tuple[str, str] | None"]


def _force(args: Mapping[str, Any], grants: Grants, state: State) -> tuple[str, str] | None:
    if args.get("force") not in (None, False):
        return "--force", "it attaches the interface of this host's default route"
    return None


def _interface_granted(args: Mapping[str, Any], grants: Grants,
                       state: State) -> tuple[str, str] | None:
    """An interface valed did not make is the host's until the admin grants its name."""
    refs = args.get("ports") if "ports" in args else [args.get("port")]
    for ref in refs if isinstance(refs, list) else [refs]:
        ifname = ref.partition(":")[2] if isinstance(ref, str) else ""
        if ifname in state.interfaces or grants.may_attach(ifname):
            continue            # valed's own: the operation's own checks answer
        return (f"of interface {ifname or ref!r}",
                "an interface of the host's that is not granted to operators: valed "
                "--operator-interfaces")
    return None


def _beyond_the_switch(kind: Any, netns: Any, address: Any, owner: Any, group: Any,
                       grants: Grants, own_socket: bool = True) -> tuple[str, str] | None:
    """What in an interface valed makes (or made) reaches beyond the switches."""
    if kind in ("vhost_user", "memif"):     # for a VM or a program: its socket, valed's
        flag = "--vhost-user" if kind == "vhost_user" else "--memif"
        if owner is not None or group is not None:
            return (f"{flag} with --owner or --group", "it hands a user a port to "
                    "send any frame from")
        if not own_socket:
            return (f"{flag} with --path" + (" or --mode client" if flag == "--vhost-user"
                                             else ""),
                    "a socket anywhere in the file system")
        return None
    if kind == "vxlan":
        return ("--vxlan", "a tunnel that carries the switch's frames to any address")
    if kind == "persistent_tap":        # for a VM; the operation refuses netns, address
        if owner is not None or group is not None:
            return ("--persistent with --owner or --group",
                    "it hands a user a raw frame device")
        return None
    if netns is None:
        if address is not None:
            return ("--address without --netns",
                    "an address and a route in valed's own namespace, this host's")
        return ("without --netns",
                "a TAP or veth peer in valed's own namespace is a port for this host's "
                "own network stack")
    if not isinstance(netns, str) or netns not in grants.netns:
        return (f"--netns {netns!r}",
                "a namespace not granted to operators: valed --operator-netns")
    return None


def _create(args: Mapping[str, Any], grants: Grants, state: State) -> tuple[str, str] | None:
    return _beyond_the_switch(args.get("kind"), args.get("netns"), args.get("address"),
                              args.get("owner"), args.get("group"), grants,
                              args.get("path") is None and args.get("mode") in (None, "server"))


def _remove(args: Mapping[str, Any], grants: Grants, state: State) -> tuple[str, str] | None:
    """An operator undoes only what an operator may do: removing a veth with an address
    in valed's namespace would take a route of the host's away."""
    name = args.get("name")
    record: Interface | None = state.interfaces.get(name) if isinstance(name, str) else None
    if record is None:
        return None             # not valed's: the operation refuses it
    beyond = _beyond_the_switch(record.kind, record.netns, record.address, record.owner,
                                record.group, grants,
                                record.path in (None, vhost.socket_path(name),
                                                memif.socket_path(name))
                                and record.mode != "client")
    if beyond is None:
        return None
    what = beyond[0] if beyond[0].startswith("without") else f"with {beyond[0]}"
    return f"of {name} (made {what})", beyond[1]


@dataclass(frozen=True)
class Rule:
    role: Role                          # the least role
    capture: bool = False               # and the capture grant
    root_when: tuple[Check, ...] = ()   # arguments that need root
    note: str = ""                      # those, in words (docs/security.md's table)

    @property
    def changes(self) -> bool:
        """Whether it may change something (and is logged)."""
        return self.role >= Role.OPERATOR


# Every operation valed serves, once. A new operation without a line here is refused to
# everyone but root (and tests/test_authz.py fails).
RULES: dict[str, Rule] = {
    "version": Rule(Role.NONE),
    "list": Rule(Role.READER),
    "info": Rule(Role.READER),
    "stats": Rule(Role.READER),
    "fdb_show": Rule(Role.READER),
    "fdb_stream": Rule(Role.READER),
    "mirror_show": Rule(Role.READER),
    "capture": Rule(Role.READER, capture=True),
    "set": Rule(Role.OPERATOR),
    "reload": Rule(Role.OPERATOR),
    "fdb_add": Rule(Role.OPERATOR),
    "fdb_del": Rule(Role.OPERATOR),
    "fdb_flush": Rule(Role.OPERATOR),
    "mirror_add": Rule(Role.OPERATOR, capture=True),
    "mirror_del": Rule(Role.OPERATOR),
    "attach": Rule(Role.OPERATOR, root_when=(_force, _interface_granted),
                   note="--force; an interface not granted (--operator-interfaces)"),
    "detach": Rule(Role.OPERATOR, root_when=(_interface_granted,),
                   note="an interface not granted (--operator-interfaces)"),
    "create": Rule(Role.OPERATOR, root_when=(_create,),
                   note="no --netns, or one not granted (--operator-netns); --persistent "
                        "with --owner or --group; --vhost-user with --path, --mode client, "
                        "--owner or --group; --memif with --path, --owner or --group; --vxlan"),
    "remove": Rule(Role.OPERATOR, root_when=(_remove,),
                   note="an interface whose create needed root"),
}


def forbidden(caller: Caller, what: str, needs: str) -> ApiError:
    grant = " and the capture grant" if caller.capture else ""
    return ApiError("forbidden", f"{what} needs {needs}; uid {caller.uid} has the "
                    f"{caller.role} role{grant}")


def authorize(caller: Caller, op: str, args: Mapping[str, Any], grants: Grants,
              state: State) -> Rule:
    """The op's rule, or ApiError("forbidden") naming the role it needs."""
    rule = RULES.get(op)
    if caller.role is Role.ROOT:
        return rule or Rule(Role.ROOT)
    if rule is None:
        raise forbidden(caller, op, "root (it has no rule for other roles)")
    if caller.role < rule.role:
        raise forbidden(caller, op, f"the {rule.role} role")
    if rule.capture and not caller.capture:
        raise forbidden(caller, op, "the capture grant (valed --capture-group): it reads "
                        "other ports' frames")
    for check in rule.root_when:
        found = check(args, grants, state)
        if found is not None:
            what, why = found
            raise forbidden(caller, f"{op} {what}", f"root ({why})")
    return rule


def table() -> list[tuple[str, str, str]]:
    """(operation, who may, what in it needs root): docs/security.md's table."""
    return [(op, f"{rule.role}{' + capture' if rule.capture else ''}", rule.note or "-")
            for op, rule in RULES.items()]


# -- valed's options for the roles ------------------------------------------------------

def add_options(parser: argparse.ArgumentParser) -> None:
    """The roles' groups and grants as valed options."""
    roles = parser.add_argument_group(
        "roles on the control socket (docs/security.md); root and valed's own user may do "
        "anything. With any of these groups and no --group, the socket is 0666: the roles "
        "decide")
    roles.add_argument("--reader-group", metavar="GROUP",
                       help="members may read: list, info, stats, fdb show, mirror show")
    roles.add_argument("--operator-group", metavar="GROUP",
                       help="members may also configure the switches, within the grants "
                       "below")
    roles.add_argument("--capture-group", metavar="GROUP",
                       help="members may also read frames: capture (and, if operators, "
                       "add mirrors)")
    roles.add_argument("--operator-netns", metavar="NS", action="append", default=[],
                       help="a namespace (ip netns) operators may create interfaces in "
                       "(repeat for more; default none)")
    roles.add_argument("--operator-interfaces", metavar="GLOB", action="append", default=[],
                       help="interfaces operators may attach and detach, like 'vnet*' "
                       "(repeat for more; default none)")


def from_options(args: argparse.Namespace) -> tuple[Grants, bool]:
    """Grants from valed's options (with its --group), and whether the socket is open
    to all (0666); ValueError names a group that does not exist. Without a role
    group, --group's members are operators (what --group meant before roles); with one,
    --group only narrows who may open the socket."""
    def gids(name: str | None) -> frozenset[int]:
        if name is None:
            return frozenset()
        try:
            return frozenset({grp.getgrnam(name).gr_gid})
        except KeyError:
            raise ValueError(f"no group {name!r}") from None

    role_groups = (args.reader_group, args.operator_group, args.capture_group)
    legacy = all(group is None for group in role_groups)
    grants = Grants(
        reader_gids=gids(args.reader_group),
        operator_gids=gids(args.group if legacy else args.operator_group),
        capture_gids=gids(args.capture_group),
        netns=frozenset(args.operator_netns),
        interfaces=tuple(args.operator_interfaces))
    return grants, not legacy and args.group is None
