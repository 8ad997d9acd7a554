"""Who may do what on the control socket (vale.authz): every operation for every role, the
arguments that need root, the replies and the log lines. No privileges needed: callers
are made up, and nothing here attaches or creates (a refused request never gets that far;
an allowed one is checked by `authorize` alone)."""

from __future__ import annotations

import json
import logging
import os
import pwd
import socket
import time

import pytest

from tests.conftest import start_valed, stop_valed
from vale import authz
from vale.api import Api
from vale.authz import Caller, Grants, Role
from vale.daemon import ClientLimits, Daemon
from vale.state import Interface, State

# What each role may do, written out here rather than read from authz.RULES: a change to
# the rules has to change this too. An op missing here fails test_every_op_has_a_rule.
EXPECTED = {
    "version": "none",
    "list": "reader",
    "info": "reader",
    "stats": "reader",
    "fdb_show": "reader",
    "fdb_stream": "reader",
    "mirror_show": "reader",
    "capture": "reader+capture",
    "set": "operator",
    "reload": "operator",
    "fdb_add": "operator",
    "fdb_del": "operator",
    "fdb_flush": "operator",
    "mirror_add": "operator+capture",
    "mirror_del": "operator",
    "attach": "operator",
    "detach": "operator",
    "create": "operator",
    "remove": "operator",
}

# Arguments of each op that need no more than the op's role (with the grants below).
PLAIN_ARGS: dict[str, dict] = {
    "attach": {"port": "vale0:vnet3"},
    "detach": {"port": "vale0:vnet3"},
    "create": {"name": "c1", "kind": "veth", "netns": "granted", "address": "198.18.0.1/24"},
    "remove": {"name": "mine"},
    "capture": {"port": "vale0:vnet3"},
}

GRANTS = Grants(netns=frozenset({"granted"}), interfaces=("vnet*",), root_uids=frozenset({0}))

CALLERS = {
    "none": Caller(1000, 10, Role.NONE),
    "none+capture": Caller(1000, 10, Role.NONE, capture=True),
    "reader": Caller(1000, 10, Role.READER),
    "reader+capture": Caller(1000, 10, Role.READER, capture=True),
    "operator": Caller(1000, 10, Role.OPERATOR),
    "operator+capture": Caller(1000, 10, Role.OPERATOR, capture=True),
    "root": Caller(0, 10, Role.ROOT, capture=True),
}


def served_ops() -> list[str]:
    """Every op valed answers: the Api's, its streamed ones, and capture (the daemon's)."""
    api = Api()
    return sorted({*api._ops, *api.streams, "capture"})


def state_with_interfaces() -> State:
    state = State()
    state.interfaces["mine"] = Interface("veth", "vale0", peer="mine-p", netns="granted",
                                         address="198.18.0.2/24")
    state.interfaces["hosts"] = Interface("veth", "vale0", peer="hosts-p",
                                          address="198.18.0.3/24")
    state.interfaces["elsewhere"] = Interface("veth", "vale0", peer="e-p", netns="other")
    state.interfaces["vmtap"] = Interface("persistent_tap", "vale0", owner="1000")
    state.interfaces["vmsock"] = Interface("vhost_user", "vale0", path="/tmp/x.sock",
                                           mode="server")
    state.interfaces["roottap"] = Interface("persistent_tap", "vale0")
    state.interfaces["hostport"] = Interface("tap", "vale0", mac="02:00:00:00:00:01")
    return state


def allowed(caller: Caller, op: str, args: dict, state: State | None = None) -> bool:
    try:
        authz.authorize(caller, op, args, GRANTS, state or state_with_interfaces())
    except authz.ApiError as exc:
        assert exc.code == "forbidden"
        return False
    return True


def test_every_op_has_a_rule():
    assert sorted(authz.RULES) == served_ops()
    assert sorted(EXPECTED) == served_ops()


@pytest.mark.parametrize("who", sorted(CALLERS))
@pytest.mark.parametrize("op", served_ops())
def test_every_op_for_every_role(op, who):
    need, _, grant = EXPECTED[op].partition("+")
    caller = CALLERS[who]
    expected = caller.role is Role.ROOT or (
        caller.role >= Role[need.upper()] and (not grant or caller.capture))
    assert allowed(caller, op, PLAIN_ARGS.get(op, {})) is expected


@pytest.mark.parametrize("op", [op for op in served_ops() if EXPECTED[op] != "none"])
def test_a_refusal_names_the_role_needed(op):
    rule = authz.RULES[op]
    with pytest.raises(authz.ApiError) as info:
        authz.authorize(CALLERS["none"], op, PLAIN_ARGS.get(op, {}), GRANTS, State())
    assert info.value.code == "forbidden"
    assert info.value.message == (f"{op} needs the {rule.role} role; uid 1000 has the none "
                                  "role")


# (op, args, why root): every argument that reaches beyond the switches
ROOT_ONLY = [
    ("attach", {"port": "vale0:vnet3", "force": True}, "--force"),
    ("attach", {"port": "vale0:vnet3", "force": "yes"}, "--force"),
    ("attach", {"port": "vale0:eth0"}, "of interface 'eth0'"),
    ("attach", {"port": "vale0:lo"}, "of interface 'lo'"),
    ("attach", {"port": 7}, "of interface 7"),
    ("attach", {"ports": ["vale0:vnet3", "vale0:eth0"]}, "of interface 'eth0'"),
    ("attach", {"ports": "vale0:eth0"}, "of interface 'eth0'"),
    ("detach", {"port": "vale0:eth1"}, "of interface 'eth1'"),
    ("create", {"name": "c1", "kind": "veth", "address": "198.18.0.1/24"},
     "--address without --netns"),
    ("create", {"name": "c1", "kind": "veth", "address": "0.0.0.0/1"},
     "--address without --netns"),
    ("create", {"name": "t1", "kind": "tap", "address": "198.18.0.1/24"},
     "--address without --netns"),
    ("create", {"name": "t1", "kind": "tap"}, "without --netns"),
    ("create", {"name": "c1", "kind": "veth", "peer": "c1-p"}, "without --netns"),
    ("create", {"name": "c1", "kind": "veth", "netns": None}, "without --netns"),
    ("create", {"name": "c1", "kind": "veth", "netns": "other"}, "--netns 'other'"),
    ("create", {"name": "c1", "kind": "veth", "netns": ["granted"]}, "--netns ['granted']"),
    ("create", {"name": "t1", "kind": "tap", "netns": "other", "address": "198.18.0.1/24"},
     "--netns 'other'"),
    ("create", {"name": "t1", "kind": "persistent_tap", "owner": "1000"},
     "--persistent with --owner or --group"),
    ("create", {"name": "t1", "kind": "persistent_tap", "owner": ""},
     "--persistent with --owner or --group"),
    ("create", {"name": "t1", "kind": "persistent_tap", "group": "kvm"},
     "--persistent with --owner or --group"),
    ("create", {"name": "v1", "kind": "vhost_user", "owner": "1000"},
     "--vhost-user with --owner or --group"),
    ("create", {"name": "v1", "kind": "vhost_user", "path": "/etc/passwd"},
     "--vhost-user with --path or --mode client"),
    ("create", {"name": "v1", "kind": "vhost_user", "mode": "client"},
     "--vhost-user with --path or --mode client"),
    ("create", {"name": "a1", "kind": "memif", "group": "users"},
     "--memif with --owner or --group"),
    ("create", {"name": "a1", "kind": "memif", "path": "/etc/passwd"}, "--memif with --path"),
    ("create", {"name": "vx0", "kind": "vxlan", "vni": 5, "remote": "198.19.0.2"}, "--vxlan"),
    ("remove", {"name": "vmsock"},
     "of vmsock (made with --vhost-user with --path or --mode client)"),
    ("remove", {"name": "hosts"}, "of hosts (made with --address without --netns)"),
    ("remove", {"name": "elsewhere"}, "of elsewhere (made with --netns 'other')"),
    ("remove", {"name": "vmtap"}, "of vmtap (made with --persistent with --owner or --group)"),
    ("remove", {"name": "hostport"}, "of hostport (made without --netns)"),
]


@pytest.mark.parametrize("op, args, what", ROOT_ONLY)
def test_what_reaches_beyond_the_switches_is_for_root(op, args, what):
    for who in ("operator", "operator+capture"):
        with pytest.raises(authz.ApiError) as info:
            authz.authorize(CALLERS[who], op, args, GRANTS, state_with_interfaces())
        assert info.value.code == "forbidden"
        assert info.value.message.startswith(f"{op} {what} needs root (")
        assert "uid 1000 has the operator role" in info.value.message
    assert allowed(CALLERS["root"], op, args)


# What an operator may do with arguments: the switches, and what the grants allow.
OPERATOR_MAY = [
    ("attach", {"port": "vale0:vnet3", "force": False}),
    ("attach", {"port": "vale0:vnet3", "settings": {"learning": "off"}}),
    ("detach", {"port": "vale0:mine"}),             # valed's own: the op itself refuses
    ("create", {"name": "t1", "kind": "tap", "netns": "granted"}),
    ("create", {"name": "t1", "kind": "tap", "netns": "granted", "address": "198.18.0.1/24"}),
    ("create", {"name": "c1", "kind": "veth", "peer": "c1-p", "netns": "granted"}),
    ("create", {"name": "c1", "kind": "veth", "netns": "granted", "address": None}),
    ("create", {"name": "t1", "kind": "persistent_tap"}),
    ("create", {"name": "v1", "kind": "vhost_user"}),
    ("create", {"name": "v1", "kind": "vhost_user", "mode": "server"}),
    ("create", {"name": "a1", "kind": "memif", "id": 3, "secret": "s"}),
    ("remove", {"name": "mine"}),
    ("remove", {"name": "roottap"}),
    ("remove", {"name": "nosuch"}),                 # the op answers: not made by valed
    ("set", {"target": "vale0", "settings": {"ageing": "10"}}),
]


@pytest.mark.parametrize("op, args", OPERATOR_MAY)
def test_what_an_operator_may_do(op, args):
    assert allowed(CALLERS["operator"], op, args)
    assert not allowed(CALLERS["reader+capture"], op, args)


def test_an_op_without_a_rule_is_for_root_only():
    assert not allowed(CALLERS["operator+capture"], "explode", {})
    assert allowed(CALLERS["root"], "explode", {})


def test_capture_needs_the_grant_and_says_so():
    with pytest.raises(authz.ApiError) as info:
        authz.authorize(CALLERS["operator"], "capture", {}, GRANTS, State())
    assert info.value.message.startswith("capture needs the capture grant (valed "
                                         "--capture-group)")


# -- roles from credentials -------------------------------------------------------------

def test_roles_come_from_the_groups_of_the_uid():
    nobody = pwd.getpwnam("nobody")
    uid, gid = nobody.pw_uid, nobody.pw_gid
    assert Grants(root_uids=frozenset({0})).caller(uid, gid, 5).role is Role.NONE
    assert Grants(reader_gids=frozenset({gid})).caller(uid, gid, 5).role is Role.READER
    both = Grants(reader_gids=frozenset({gid}), operator_gids=frozenset({gid}))
    assert both.caller(uid, gid, 5) == Caller(uid, 5, Role.OPERATOR, False)
    capture = Grants(capture_gids=frozenset({gid})).caller(uid, gid, 5)
    assert (capture.role, capture.capture) == (Role.READER, True)
    assert Grants().caller(0, 0, 5).role is Role.ROOT
    assert Grants().caller(os.geteuid(), os.getegid(), 5).role is Role.ROOT


def test_a_uid_without_a_name_has_its_gid_only():
    uid = 3_999_999_999
    with pytest.raises(KeyError):
        pwd.getpwuid(uid)
    assert authz.groups_of(uid, 4242) == {4242}
    assert Grants(operator_gids=frozenset({4242})).caller(uid, 4242, 1).role is Role.OPERATOR
    assert Grants(operator_gids=frozenset({4243})).caller(uid, 4242, 1).role is Role.NONE


def test_supplementary_groups_count():
    name = pwd.getpwuid(os.geteuid()).pw_name
    groups = os.getgrouplist(name, os.getegid())
    assert set(groups) <= authz.groups_of(os.geteuid(), os.getegid())


# -- through the dispatcher ---------------------------------------------------------------

def test_a_refused_request_gets_forbidden_changes_nothing_and_is_logged(caplog):
    api = Api()
    caller = Caller(1000, 4321, Role.READER)
    with caplog.at_level(logging.INFO, logger="vale.api"):
        reply = api.handle({"op": "fdb_add", "args": {"switch": "vale0", "port": "p",
                                                      "mac": "02:00:00:00:00:01"}}, caller)
        assert api.handle({"op": "list"}, caller) == {"ok": True, "result": []}
    assert reply == {"ok": False, "error": {
        "code": "forbidden",
        "message": "fdb_add needs the operator role; uid 1000 has the reader role"}}
    assert api.desired == State()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ['uid 1000 pid 4321 (reader): fdb_add {"mac": "02:00:00:00:00:01", '
                     '"port": "p", "switch": "vale0"}: failed: forbidden']
    assert caplog.records[0].levelno == logging.WARNING


def test_every_change_is_logged_with_uid_and_pid_and_reads_are_not(caplog):
    api = Api()
    operator = Caller(1000, 4321, Role.OPERATOR)
    with caplog.at_level(logging.INFO, logger="vale.api"):
        api.handle({"op": "stats"}, operator)
        api.handle({"op": "version"}, operator)
        reply = api.handle({"op": "set", "args": {"target": "vale9", "settings": {"a": 1}}},
                           operator)
        api.handle({"op": "reload"}, operator)
    assert reply["error"]["code"] == "not_found"
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        'uid 1000 pid 4321 (operator): set {"settings": {"a": 1}, "target": "vale9"}: '
        'failed: not_found',
        "uid 1000 pid 4321 (operator): reload {}: done"]


def test_long_arguments_are_cut_in_the_log(caplog):
    api = Api()
    with caplog.at_level(logging.INFO, logger="vale.api"):
        api.handle({"op": "set", "args": {"target": "x" * 5000, "settings": {"a": 1}}},
                   Caller(1000, 1, Role.OPERATOR))
    (line,) = [r.getMessage() for r in caplog.records]
    assert len(line) < 600 and "..." in line


def test_in_process_callers_are_valed_itself():
    reply = Api().handle({"op": "attach", "args": {"port": "vale0:lo", "force": True,
                                                   "settings": {"colour": 1}}})
    assert reply["error"]["code"] == "invalid"      # past authorization, refused on merit


def test_the_docs_table_is_the_rules():
    from tests.conftest import ROOT
    text = (ROOT / "docs" / "security.md").read_text()
    for op, who, root in authz.table():
        assert f"| `{op}` | {who} | {root} |" in text, op


# -- valed's settings ---------------------------------------------------------------------

def test_group_alone_makes_its_members_operators_on_a_0660_socket():
    import argparse
    import grp
    gid = pwd.getpwnam("nobody").pw_gid
    name = grp.getgrgid(gid).gr_name
    args = argparse.Namespace(group=name, reader_group=None, operator_group=None,
                              capture_group=None, operator_netns=[], operator_interfaces=[])
    grants, open_socket = authz.from_options(args)
    assert grants.operator_gids == {gid} and not grants.reader_gids and not open_socket
    args.reader_group = name
    grants, open_socket = authz.from_options(args)
    assert grants.reader_gids == {gid} and not grants.operator_gids and not open_socket
    args.group = None
    grants, open_socket = authz.from_options(args)
    assert open_socket
    args.operator_group = "no-such-group-here"
    with pytest.raises(ValueError, match="no group 'no-such-group-here'"):
        authz.from_options(args)


# -- connection places ------------------------------------------------------------------

class FakeTask:
    pass


def test_places_per_user_and_those_kept_for_root(tmp_path):
    daemon = Daemon(str(tmp_path / "s"), str(tmp_path), grants=Grants(root_uids=frozenset({0})),
                    limits=ClientLimits(total=10, kept_for_root=3, per_user=4))

    def take(uid: int) -> None:
        task = FakeTask()
        daemon.clients.add(task)        # type: ignore[arg-type]
        daemon.per_uid[uid] += 1

    for _ in range(4):
        assert daemon._busy(1000) is None
        take(1000)
    assert "uid 1000 holds 4 connections" in daemon._busy(1000)
    for _ in range(3):
        assert daemon._busy(1001) is None
        take(1001)
    assert "besides root's" in daemon._busy(1002)    # 7 of 10: the rest is root's
    for _ in range(3):
        assert daemon._busy(0) is None
        take(0)
    assert daemon._busy(0) == "valed is serving 10 clients; try again"


def test_an_idle_client_is_told_and_closed_and_valed_goes_on(tmp_path):
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         extra=("--idle-timeout", "0.5"))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(daemon.socket)
            s.sendall(b'{"op": "version"}\n')
            stream = s.makefile("rb")
            assert json.loads(stream.readline())["ok"] is True
            start = time.monotonic()
            s.sendall(b'{"op": "vers')                   # half a request, then nothing
            reply = json.loads(stream.readline())
            waited = time.monotonic() - start
            assert stream.readline() == b""             # closed
        assert reply == {"ok": False, "error": {
            "code": "idle", "message": "no request for 0.5 s: valed closes the connection"}}
        assert 0.4 < waited < 5
        assert daemon("version")["api"] == 1
    finally:
        stop_valed(daemon)
