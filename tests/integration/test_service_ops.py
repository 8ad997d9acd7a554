"""Running vale as a service: interfaces valed creates, configuration that survives
restarts and crashes, interfaces that vanish and return, and requests that must change
nothing. Root and namespaces; skipped otherwise (see conftest)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, start_valed, stop_valed
from tests.integration.conftest import PREFIX, Host, finish, sh
from tests.integration.test_switching import Load, run_iperf


def netns(name: str) -> str:
    sh("ip", "netns", "add", name)
    return name


def container(valed, i: int, switch: str = "vale0") -> Host:
    """A namespace hanging off vale0 by a veth valed made: the container case."""
    ns = netns(f"{PREFIX}h{i:03d}")
    name, peer = f"{PREFIX}p{i:03d}", f"{PREFIX}q{i:03d}"
    ip = f"198.18.1.{i}"
    valed("create", name=name, kind="veth", switch=switch, peer=peer, netns=ns,
          address=f"{ip}/16")
    mac = sh("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{peer}/address").stdout.strip()
    return Host(ns, name, ip, mac)


def cleanup(*names: str) -> None:
    for name in names:
        sh("ip", "netns", "del", name, check=False)
        sh("ip", "link", "del", name, check=False)


def test_veth_and_tap_made_by_valed_carry_traffic(valed):
    tap_ns, tap_name = f"{PREFIX}h003", f"{PREFIX}p003"
    try:
        a, b = container(valed, 1), container(valed, 2)
        netns(tap_ns)
        valed("create", name=tap_name, kind="tap", netns=tap_ns, address="198.18.1.3/24")
        assert a.ping(b)
        assert sh("ip", "netns", "exec", tap_ns, "ping", "-c", "3", "-i", "0.1", "-q",
                  "198.18.1.1", check=False).returncode == 0
        kinds = {p["port"]: (p["kind"], p["state"]) for p in valed("list")}
        assert kinds == {a.port: ("veth", "up"), b.port: ("veth", "up"),
                         tap_name: ("tap", "up")}
        tcp = run_iperf(a, Host(tap_ns, tap_name, "198.18.1.3", ""), seconds=2)
        assert tcp > 0.5, f"{tcp:.2f} Gbit/s to the TAP"
        valed("remove", name=tap_name)
        valed("remove", name=a.port)
        assert not os.path.exists(f"/sys/class/net/{a.port}")
        assert {p["port"] for p in valed("list")} == {b.port}
    finally:
        cleanup(tap_ns, *(f"{PREFIX}{k}{i:03d}" for k in "hp" for i in (1, 2)))


def test_remove_refuses_what_valed_did_not_make(valed, make_host):
    a = make_host(1)
    valed.attach(a)
    result = valed.ctl("remove", a.port, check=False)
    assert result.returncode == 1 and "not made by valed" in result.stderr
    assert os.path.exists(f"/sys/class/net/{a.port}")


def test_persistent_tap_for_a_vm(valed):
    name = f"{PREFIX}p009"
    try:
        valed.ctl("create", name, "--tap", "--persistent", "--owner", "nobody",
                  "--group", "nogroup")
        owner = open(f"/sys/class/net/{name}/owner").read().strip()
        assert int(owner) == int(sh("id", "-u", "nobody").stdout)
        assert {p["port"]: p["kind"] for p in valed("list")} == {name: "persistent_tap"}
        valed("remove", name=name)
        assert not os.path.exists(f"/sys/class/net/{name}")
    finally:
        cleanup(name)


def configure(valed, hosts: list[Host]) -> dict:
    """A topology with settings and statics; returns what `list`, settings and FDB show."""
    valed.attach(*hosts[:2])
    valed("set", target="vale0", settings={"ageing": "120", "fdb_capacity": "4096"})
    valed("set", target=f"vale0:{hosts[0].port}", settings={"learn_limit": "50"})
    valed("fdb_add", switch="vale0", mac="02:00:00:00:99:01", port=hosts[1].port)
    return snapshot(valed)


def snapshot(valed) -> dict:
    stats = valed("stats", target="vale0")[0]
    statics = [(e["mac"], e["port"]) for e in valed("fdb_show", switch="vale0") if e["static"]]
    ports = [(p["switch"], p["port"], p["kind"], p["state"]) for p in valed("list")]
    return {"list": ports, "ageing": stats["settings"]["ageing"],
            "capacity": stats["fdb"]["capacity"], "statics": statics,
            "limits": {p["port"]: valed("info", port=f"vale0:{p['port']}")["settings"]
                       ["learn_limit"] for p in valed("list")}}


def restart(daemon, tmp_path, how: signal.Signals):
    daemon.proc.send_signal(how)
    daemon.proc.wait(10)
    return start_valed(daemon.socket, daemon.log, state_dir=tmp_path / "state")


def test_configuration_survives_sigterm_and_kill_9(tmp_path, make_host):
    hosts = [make_host(1), make_host(2)]
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         state_dir=tmp_path / "state")
    try:
        c = container(daemon, 3)
        before = configure(daemon, hosts)
        before_with_c = snapshot(daemon)
        for how in (signal.SIGTERM, signal.SIGKILL):
            daemon = restart(daemon, tmp_path, how)
            assert snapshot(daemon) == before_with_c, how
            assert hosts[0].ping(hosts[1]) and hosts[0].ping(c), how
        assert before["ageing"] == 120.0 and before["capacity"] == 4096
    finally:
        stop_valed(daemon)
        cleanup(f"{PREFIX}h003", f"{PREFIX}p003")


def test_a_tap_whose_namespace_is_gone_after_a_restart_leaves_valed_serving(tmp_path):
    """After a reboot the namespace a TAP was created in is gone: making the TAP, failing
    to move it and closing it sent link events, each of which tried again, and valed
    never got back to its requests. Now a failed try waits before the next."""
    ns, name = f"{PREFIX}h004", f"{PREFIX}p004"
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         state_dir=tmp_path / "state")
    try:
        netns(ns)
        daemon("create", name=name, kind="tap", netns=ns, address="198.18.1.4/24")
        daemon.proc.send_signal(signal.SIGTERM)
        daemon.proc.wait(10)
        sh("ip", "netns", "del", ns)
        daemon = start_valed(daemon.socket, daemon.log, state_dir=tmp_path / "state")
        end = time.monotonic() + 3
        while time.monotonic() < end:           # answering all along, the TAP down
            assert {p["port"]: p["state"] for p in daemon("list")}[name] != "up"
            time.sleep(0.2)
        assert "cannot come back yet" in daemon.log.read_text()
    finally:
        stop_valed(daemon)
        cleanup(ns, name)


def test_a_tap_of_valeds_that_is_deleted_is_made_again(valed):
    """Its fd dies with the device; it stayed down until a restart."""
    name = f"{PREFIX}p005"
    try:
        valed("create", name=name, kind="tap")
        assert {p["port"]: p["state"] for p in valed("list")}[name] == "up"
        sh("ip", "link", "del", name)
        deadline = time.monotonic() + 8
        while True:
            state = {p["port"]: p["state"] for p in valed("list")}.get(name)
            if state == "up" and os.path.exists(f"/sys/class/net/{name}"):
                break
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        assert "its TAP is gone; making it again" in valed.log.read_text()
    finally:
        cleanup(name)


def test_a_tap_of_valeds_comes_back_with_its_mac_after_a_restart(tmp_path, make_host):
    """A TAP valed holds dies with valed and is made again when it starts. It used to come
    back with a new MAC, and a host that had talked to it kept sending to the old one
    until its neighbour entry expired (up to a minute): pings right after failed."""
    a = make_host(1)
    ns, name = f"{PREFIX}h006", f"{PREFIX}p006"
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log",
                         state_dir=tmp_path / "state")
    try:
        netns(ns)
        daemon.attach(a)
        daemon("create", name=name, kind="tap", netns=ns, address="198.18.1.6/16")
        tap_host = Host(ns, name, "198.18.1.6", "")

        def mac() -> str:
            return tap_host.run("cat", f"/sys/class/net/{name}/address").stdout.strip()

        first = mac()
        assert a.ping(tap_host)
        for how in (signal.SIGTERM, signal.SIGKILL):
            daemon = restart(daemon, tmp_path, how)
            assert {p["port"]: p["state"] for p in daemon("list")}[name] == "up", how
            assert mac() == first, how
            assert a.ping(tap_host, count=2, timeout=1), how
    finally:
        stop_valed(daemon)
        cleanup(ns, name)


def test_a_corrupt_state_file_is_moved_aside_and_valed_starts_empty(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"version": 1, "switches": {"vale0": ')   # truncated
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log", state_dir=state)
    try:
        assert daemon("list") == []
        aside = [p.name for p in state.iterdir() if p.name.startswith("state.json.corrupt-")]
        assert len(aside) == 1
        assert "unusable" in daemon.log.read_text()
    finally:
        stop_valed(daemon)


def test_failed_requests_change_neither_configuration_nor_state_file(valed, make_host):
    a = make_host(1)
    valed.attach(a)
    taken = netns(f"{PREFIX}h055")          # a peer name the kernel finds taken there
    sh("ip", "-n", taken, "link", "add", "vq055", "type", "veth", "peer", "name", "vq056")
    state_file = valed.log.parent / "state.json"
    saved = state_file.read_bytes()
    before = valed("list")
    for argv, words in [
        (("create", "bad/name", "--veth"), "port name"),
        (("create", f"{PREFIX}p050", "--veth", "--netns", "no-such-ns"), "no network namespace"),
        (("create", f"{PREFIX}p051", "--veth", "--address", "198.18.0.300/24"), "address"),
        (("create", f"{PREFIX}p052", "--tap", "--persistent", "--owner", "nosuchuser0"),
         "no user"),
        (("create", a.port, "--veth"), "in use"),
        (("create", f"{PREFIX}p053", "--tap", "--address", "198.18.5.1/24"), "netns too"),
        (("create", f"{PREFIX}p054", "--tap", "--persistent", "--netns", "x"), "no namespace"),
        (("create", f"{PREFIX}p055", "--veth", "--peer", "vq055", "--netns", taken),
         "the kernel refused: File exists"),
        (("attach", "vale0:nosuchif0"), "no interface"),
        (("set", f"vale0:{a.port}", "learn_limit=-5"), "learn_limit"),
        (("fdb", "vale0", "add", "01:00:5e:00:00:01", a.port), "unicast"),
    ]:
        result = valed.ctl(*argv, check=False)
        assert result.returncode == 1, argv
        assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert valed("list") == before
    assert state_file.read_bytes() == saved
    assert not any(os.path.exists(f"/sys/class/net/{PREFIX}p05{i}") for i in range(6))
    sh("ip", "netns", "del", taken)


def test_deleted_and_recreated_veth_comes_back_under_traffic(valed, make_host):
    a, b, c = make_host(1), make_host(2), make_host(3)
    valed.attach(a, b, c)
    assert a.ping(c)
    load = Load(a, b, seconds=4)
    sh("ip", "link", "del", c.port)
    deadline = time.monotonic() + 5
    while {p["port"]: p["state"] for p in valed("list")}[c.port] != "missing":
        assert time.monotonic() < deadline, "the deleted veth's port is not missing"
        time.sleep(0.05)
    # the same host, a new veth with the same names
    sh("ip", "link", "add", c.port, "type", "veth", "peer", "name", "eth0", "netns", c.ns)
    sh("ip", "link", "set", c.port, "up")
    sh("ip", "-n", c.ns, "addr", "add", f"{c.ip}/16", "dev", "eth0")
    sh("ip", "-n", c.ns, "link", "set", "eth0", "up")
    deadline = time.monotonic() + 10
    while {p["port"]: p["state"] for p in valed("list")}[c.port] != "up":
        assert time.monotonic() < deadline, "the port did not come back"
        time.sleep(0.1)
    assert load.gbps() > 0.2                             # a-b never stopped
    assert c.ping(a)                                     # and c passes traffic again


def test_mtu_changes_are_followed(valed, make_host):
    a, b = make_host(1), make_host(2)
    valed.attach(a, b)
    for host in (a, b):
        sh("ip", "link", "set", host.port, "mtu", "4000")
        host.run("ip", "link", "set", "eth0", "mtu", "4000")
    deadline = time.monotonic() + 5
    while valed("info", port=f"vale0:{b.port}")["settings"]["max_frame"] != 4018:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert a.ping(b, size=3972)


def test_the_default_route_interface_is_refused_unless_forced(tmp_path):
    """In a namespace of the test's own, with a default route there, a valed of its own."""
    ns = netns(f"{PREFIX}h070")
    try:
        sh("ip", "-n", ns, "link", "add", "up0", "type", "veth", "peer", "name", "up1")
        for cmd in (("addr", "add", "198.18.7.1/24", "dev", "up0"), ("link", "set", "up0", "up"),
                    ("link", "set", "up1", "up"), ("route", "add", "default", "via",
                                                   "198.18.7.254")):
            sh("ip", "-n", ns, *cmd)
        sock = str(tmp_path / "v.sock")
        proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-m", "vale.daemon",
                                 "--foreground", "--socket", sock, "--state-dir", str(tmp_path),
                                 "--no-metrics"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd=ROOT)
        try:
            ctl = [sys.executable, "-m", "vale.cli.valectl", "--socket", sock]
            for _ in range(300):
                if subprocess.run([*ctl, "list"], capture_output=True, cwd=ROOT).returncode == 0:
                    break
                assert proc.poll() is None, "valed died in the namespace"
                time.sleep(0.05)
            refused = subprocess.run(["ip", "netns", "exec", ns, *ctl, "attach", "vale0:up0"],
                                     capture_output=True, text=True, cwd=ROOT)
            assert refused.returncode == 1 and "default route" in refused.stderr
            forced = subprocess.run(["ip", "netns", "exec", ns, *ctl, "attach", "vale0:up0",
                                     "--force", "--json"], capture_output=True, text=True,
                                    cwd=ROOT)
            assert forced.returncode == 0 and json.loads(forced.stdout)["state"] == "up"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    finally:
        cleanup(ns)


def test_api_abuse_while_traffic_flows(valed, make_host):
    """Garbage, huge and nested requests and connection storms: answers keep coming and
    frames keep flowing."""
    import socket as sockets
    a, b = make_host(1), make_host(2)
    valed.attach(a, b)
    pinger = a.popen("ping", "-c", "300", "-i", "0.01", "-q", b.ip, stdout=subprocess.PIPE,
                     text=True)
    payloads = [os.urandom(512), b"{" * 50000, b"[" * 70000, b'{"op": 1}', b'{"op": "attach", '
                b'"args": {"port": ["x"]}}', json.dumps({"op": "list", "args": {"x": "y" * 70000}})
                .encode()]
    for round_ in range(40):
        for payload in payloads:
            with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as s:
                s.connect(valed.socket)
                s.sendall(payload.replace(b"\n", b" ") + b"\n")
                if round_ % 2:
                    continue            # half the time, hang up without reading
                s.settimeout(10)
                assert json.loads(s.makefile("rb").readline())["ok"] is False
    out, _ = finish(pinger, 60)
    assert " 0% packet loss" in out, out
    assert valed("version")["api"] == 1
