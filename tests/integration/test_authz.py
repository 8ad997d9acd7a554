"""Roles on the control socket, tried from another user: uid nobody connects to a real
valed with the gid of a reader, operator or capture group, or of none, and gets what its
role allows and a "forbidden" error for the rest; connections per user, the places kept
for root and the idle timeout, with the lock-out of issue 14 (256 idle connections)
tried against them. Root (groups, namespaces, setpriv); skipped otherwise."""

from __future__ import annotations

import grp
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, start_valed, stop_valed
from tests.integration.conftest import PREFIX, process_alive, sh

NOBODY = ["setpriv", "--reuid=nobody", "--clear-groups"]
_OUR_GROUP = re.compile(r"^vt(\d+)[rocx]$")

# Run as nobody: each request (JSON, argv) on a connection of its own; each reply printed.
CLIENT = r"""
import socket, sys
for request in sys.argv[2:]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(20)
        s.connect(sys.argv[1])
        try:
            s.sendall(request.encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass                        # told busy and closed: the answer is there
        print(s.makefile("rb").readline().decode().strip() or "{}", flush=True)
"""

# Run as nobody: open N connections and hold them; print how many valed serves and how
# many it refused as busy; after LINGER seconds, how many it closed as idle; hold the
# rest until stdin closes.
HOLDER = r"""
import socket, sys, time
path, n, linger = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
held = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    held.append(s)
time.sleep(1.0)                          # valed answers a refused connection at once
served, busy = [], 0
for s in held:
    s.setblocking(False)
    try:
        data = s.recv(4096)
    except BlockingIOError:
        served.append(s)
        continue
    busy += b'"busy"' in data
print(len(served), busy, flush=True)
if linger:
    time.sleep(linger)
    idle = 0
    for s in served:
        try:
            idle += b'"idle"' in s.recv(4096)
        except BlockingIOError:
            pass
    print(idle, flush=True)
sys.stdin.read()
"""


def remove_our_groups(only_this_run: bool) -> None:
    for group in grp.getgrall():
        m = _OUR_GROUP.match(group.gr_name)
        if m and (int(m.group(1)) == os.getpid() or
                  (not only_this_run and not process_alive(int(m.group(1))))):
            sh("groupdel", group.gr_name, check=False)


@pytest.fixture
def groups():
    """Three groups of this run's: reader, operator, capture; and one in no role."""
    if shutil.which("setpriv") is None or shutil.which("groupadd") is None:
        pytest.skip("needs setpriv and groupadd")
    remove_our_groups(only_this_run=False)
    names = {role: f"{PREFIX}{role[0]}" for role in ("reader", "operator", "capture")}
    names["none"] = f"{PREFIX}x"
    try:
        for name in names.values():
            sh("groupadd", name)
        yield {role: grp.getgrnam(name).gr_gid for role, name in names.items()} | {
            f"{role}_name": name for role, name in names.items()}
    finally:
        remove_our_groups(only_this_run=True)


@pytest.fixture
def place():
    """A directory nobody can reach (the socket in it is valed's to open or not)."""
    where = Path(tempfile.mkdtemp(prefix="vale-authz-"))
    where.chmod(0o755)
    yield where
    shutil.rmtree(where, ignore_errors=True)


def as_nobody(daemon, gid: int, *requests: tuple[str, dict]) -> list[dict]:
    result = sh(*NOBODY, f"--regid={gid}", sys.executable, "-c", CLIENT, daemon.socket,
                *(json.dumps({"op": op, "args": args}) for op, args in requests), cwd=ROOT)
    return [json.loads(line) for line in result.stdout.splitlines()]


def valectl_as_nobody(daemon, gid: int, *argv: str) -> subprocess.CompletedProcess:
    """This tree's valectl (`-m cli.valectl` from this tree; `-m vale.cli.valectl` is
    whichever tree the virtual environment installed)."""
    return sh(*NOBODY, f"--regid={gid}", sys.executable, "-m", "cli.valectl",
              "--socket", daemon.socket, *argv, check=False, cwd=ROOT,
              env={**os.environ, "PYTHONPATH": str(ROOT)})


def forbidden(message: str) -> dict:
    return {"ok": False, "error": {"code": "forbidden", "message": message}}


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def test_each_role_gets_what_it_may_and_forbidden_for_the_rest(groups, place, make_host):
    granted, other = f"{PREFIX}h050", f"{PREFIX}h051"
    host = make_host(1)
    for ns in (granted, other):
        sh("ip", "netns", "add", ns)
    daemon = start_valed(str(place / "valed.sock"), place / "valed.log", extra=(
        "--reader-group", groups["reader_name"], "--operator-group", groups["operator_name"],
        "--capture-group", groups["capture_name"], "--operator-netns", granted,
        "--operator-interfaces", f"{PREFIX}p*"))
    port = f"vale0:{host.port}"
    made, peer = f"{PREFIX}t001", f"{PREFIX}t002"
    try:
        assert os.stat(daemon.socket).st_mode & 0o777 == 0o666     # the roles decide
        nobody = 65534

        # In no role's group: version, nothing else.
        assert [r.get("ok") for r in as_nobody(daemon, groups["none"], ("version", {}))] == \
            [True]
        assert as_nobody(daemon, groups["none"], ("list", {})) == [forbidden(
            f"list needs the reader role; uid {nobody} has the none role")]

        # An operator: the switches, the granted interface and namespace.
        op = groups["operator"]
        replies = as_nobody(
            daemon, op,
            ("attach", {"port": port}),
            ("set", {"target": "vale0", "settings": {"ageing": "60"}}),
            ("fdb_add", {"switch": "vale0", "port": host.port, "mac": "02:00:00:00:00:07"}),
            ("create", {"name": made, "kind": "veth", "peer": peer, "netns": granted,
                        "address": "198.18.5.1/24"}),
            ("list", {}))
        assert [r["ok"] for r in replies] == [True] * 5, replies
        assert {(p["port"], p["state"]) for p in replies[-1]["result"]} == {
            (host.port, "up"), (made, "up")}
        assert "198.18.5.1/24" in sh("ip", "-n", granted, "addr", "show", peer).stdout

        refused = as_nobody(
            daemon, op,
            ("attach", {"port": f"vale0:{host.port}", "force": True}),
            ("attach", {"port": "vale0:lo"}),
            ("create", {"name": f"{PREFIX}t003", "kind": "veth", "address": "198.18.6.1/24"}),
            ("create", {"name": f"{PREFIX}t004", "kind": "veth", "netns": other}),
            ("create", {"name": f"{PREFIX}t005", "kind": "persistent_tap", "owner": "nobody"}),
            ("create", {"name": f"{PREFIX}t008", "kind": "tap"}),
            ("mirror_add", {"switch": "vale0", "from": [host.port], "to": made}),
            ("capture", {"port": port}))
        assert [r["error"]["code"] for r in refused] == ["forbidden"] * 8, refused
        messages = [r["error"]["message"] for r in refused]
        assert messages[0] == ("attach --force needs root (it attaches the interface of this "
                               f"host's default route); uid {nobody} has the operator role")
        assert messages[1].startswith("attach of interface 'lo' needs root")
        assert messages[2].startswith("create --address without --netns needs root")
        assert messages[3].startswith(f"create --netns '{other}' needs root")
        assert messages[4].startswith("create --persistent with --owner or --group needs root")
        assert messages[5] == (
            "create without --netns needs root (a TAP or veth peer in valed's own namespace "
            f"is a port for this host's own network stack); uid {nobody} has the operator role")
        assert messages[6].startswith("mirror_add needs the capture grant")
        assert messages[7].startswith("capture needs the capture grant")
        for name in (f"{PREFIX}t003", f"{PREFIX}t004", f"{PREFIX}t005", f"{PREFIX}t008"):
            assert not link_exists(name)
        assert len(daemon("list")) == 2 and daemon("mirror_show", switch="vale0") == []

        # What root made beyond the grants, an operator may not remove.
        daemon("create", name=f"{PREFIX}t006", kind="veth", peer=f"{PREFIX}t007", netns=other)
        assert as_nobody(daemon, op, ("remove", {"name": f"{PREFIX}t006"}))[0]["error"][
            "message"].startswith(f"remove of {PREFIX}t006 (made with --netns '{other}') "
                                  "needs root")
        assert link_exists(f"{PREFIX}t006")
        daemon("remove", name=f"{PREFIX}t006")

        # A reader reads; with the capture grant it captures too.
        reads = as_nobody(daemon, groups["reader"], ("list", {}), ("stats", {}),
                          ("info", {"port": port}), ("fdb_show", {"switch": "vale0"}),
                          ("mirror_show", {"switch": "vale0"}), ("capture", {"port": port}),
                          ("detach", {"port": port}))
        assert [r["ok"] for r in reads] == [True] * 5 + [False] * 2
        assert reads[4]["result"] == [] and len(reads[0]["result"]) == 2
        assert reads[5] == forbidden("capture needs the capture grant (valed --capture-group): "
                                     f"it reads other ports' frames; uid {nobody} has the "
                                     "reader role")
        assert reads[6] == forbidden(f"detach needs the operator role; uid {nobody} has the "
                                     "reader role")
        capture = as_nobody(daemon, groups["capture"], ("capture", {"port": port}),
                            ("attach", {"port": port}))
        assert capture[0] == {"ok": True, "result": {"capturing": port}}
        assert capture[1]["error"]["code"] == "forbidden"

        # valectl says it in one line.
        result = valectl_as_nobody(daemon, groups["reader"], "detach", port)
        assert result.returncode == 1
        assert result.stderr == (f"valectl: forbidden: detach needs the operator role; uid "
                                 f"{nobody} has the reader role\n")

        # The operator undoes what it did; the daemon served root throughout.
        assert [r["ok"] for r in as_nobody(daemon, op, ("remove", {"name": made}),
                                           ("detach", {"port": port}))] == [True, True]
        assert daemon("list") == [] and not link_exists(made)

        log = daemon.log.read_text()
        assert re.search(rf"uid {nobody} pid \d+ \(operator\): create .*\"name\": \"{made}\""
                         r".*: done", log)
        assert re.search(rf"uid {nobody} pid \d+ \(operator\): attach .*\"force\": true.*: "
                         "failed: forbidden", log)
        assert re.search(rf"uid {nobody} pid \d+ \(reader\): capture .*: failed: forbidden",
                         log)
        assert re.search(rf"uid {nobody} pid \d+ \(reader, capture\): capture .*: done", log)
        assert not re.search(r"\(reader\): (list|stats|info)", log)     # reads go unlogged
    finally:
        stop_valed(daemon)
        for ns in (granted, other):
            sh("ip", "netns", "del", ns, check=False)
        for i in range(1, 9):
            sh("ip", "link", "del", f"{PREFIX}t{i:03d}", check=False)


def test_groups_are_read_at_each_connection(groups, place):
    daemon = start_valed(str(place / "valed.sock"), place / "valed.log", extra=(
        "--operator-group", groups["operator_name"]))
    nogroup = grp.getgrnam("nogroup").gr_gid
    set_ = ("set", {"target": "vale9", "settings": {"ageing": "1"}})
    try:
        assert as_nobody(daemon, nogroup, set_)[0]["error"]["code"] == "forbidden"
        sh("gpasswd", "-a", "nobody", groups["operator_name"])
        # a supplementary group, though the process has none (--clear-groups)
        assert as_nobody(daemon, nogroup, set_)[0]["error"]["code"] == "not_found"
        sh("gpasswd", "-d", "nobody", groups["operator_name"])
        assert as_nobody(daemon, nogroup, set_)[0]["error"]["code"] == "forbidden"
    finally:
        stop_valed(daemon)


def hold(daemon, gid: int, n: int, linger: float = 0) -> tuple[subprocess.Popen, list[int]]:
    """nobody holding n connections: (its process, [served, busy])."""
    proc = subprocess.Popen([*NOBODY, f"--regid={gid}", sys.executable, "-c", HOLDER,
                             daemon.socket, str(n), str(linger)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    return proc, [int(x) for x in proc.stdout.readline().split()]


def let_go(proc: subprocess.Popen) -> None:
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def root_is_served(daemon) -> None:
    start = time.monotonic()
    assert daemon("list") == []
    assert daemon.ctl("list").returncode == 0
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("per_user, served", [(None, 32), ("1000", 248)],
                         ids=["per-user cap", "places kept for root"])
def test_256_idle_connections_of_a_user_never_lock_root_out(groups, place, per_user, served):
    """Issue 14's lock-out: a group member opens 256 connections and says nothing. It
    gets its own 32 places (or, uncapped, all but the 8 kept for root); root's valectl
    is served at once."""
    extra = ("--reader-group", groups["reader_name"])
    if per_user:
        extra += ("--max-clients-per-user", per_user)
    daemon = start_valed(str(place / "valed.sock"), place / "valed.log", extra=extra)
    proc = None
    try:
        proc, counts = hold(daemon, groups["reader"], 256)
        assert counts == [served, 256 - served]
        root_is_served(daemon)
        more = as_nobody(daemon, groups["reader"], ("list", {}))[0]
        assert more["error"]["code"] == "busy"
        assert more["error"]["message"] == (
            "uid 65534 holds 32 connections to valed, the most one user may (valed "
            "--max-clients-per-user); close one" if per_user is None else
            "valed is serving 248 clients, all it serves besides root's; try again")
    finally:
        if proc is not None:
            let_go(proc)
        stop_valed(daemon)


def test_idle_connections_are_closed_and_their_places_come_back(groups, place):
    daemon = start_valed(str(place / "valed.sock"), place / "valed.log", extra=(
        "--reader-group", groups["reader_name"], "--max-clients-per-user", "4",
        "--idle-timeout", "3"))
    proc = None
    try:
        proc, counts = hold(daemon, groups["reader"], 5, linger=3.5)
        assert counts == [4, 1]
        assert as_nobody(daemon, groups["reader"], ("list", {}))[0]["error"]["code"] == "busy"
        root_is_served(daemon)
        assert proc.stdout is not None
        assert int(proc.stdout.readline()) == 4        # each told "idle", and closed
        assert as_nobody(daemon, groups["reader"], ("list", {})) == [{"ok": True,
                                                                      "result": []}]
    finally:
        if proc is not None:
            let_go(proc)
        stop_valed(daemon)
