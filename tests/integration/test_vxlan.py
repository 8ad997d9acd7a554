"""One L2 segment across two machines over the kernel's VXLAN: each machine is a network
namespace with its own valed and a host, joined by a veth underlay (198.19.0.0/24);
`valectl create vx0 --vxlan` on both ends. Hosts ping and stream TCP across, each valed
learns the far host's MAC on its VXLAN port, a VLAN is carried across, and an underlay
too small for the switch's frames gets a warning. Root and namespaces; skipped
otherwise."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import Valed, stop_valed
from tests.integration.conftest import PREFIX, Host, sh
from tests.integration.test_guard import valectl, valed_in

UNDERLAY = ("198.19.0.1", "198.19.0.2")


@dataclass
class Machine:
    ns: str
    valed: Valed
    host: Host
    underlay: str


@pytest.fixture
def machines(make_host, tmp_path) -> Iterator[list[Machine]]:
    """Two machines, underlay MTU `1550` (VXLAN then carries 1500-byte frames)."""
    made: list[Machine] = []
    names = [f"{PREFIX}h{901 + k}" for k in (0, 1)]
    links = [f"{PREFIX}p{901 + k}" for k in (0, 1)]
    try:
        for ns in names:
            sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", links[0], "mtu", "1550", "netns", names[0], "type", "veth",
           "peer", "name", links[1], "mtu", "1550", "netns", names[1])
        for k, ns in enumerate(names):
            sh("ip", "-n", ns, "addr", "add", f"{UNDERLAY[k]}/24", "dev", links[k])
            sh("ip", "-n", ns, "link", "set", links[k], "up")
            host = make_host(k + 1)
            sh("ip", "link", "set", host.port, "netns", ns)
            sh("ip", "-n", ns, "link", "set", host.port, "up")
            (tmp_path / ns).mkdir()
            daemon = valed_in(ns, tmp_path / ns)
            made.append(Machine(ns, daemon, host, links[k]))
            daemon.attach(host)
        yield made
    finally:
        for machine in made:
            stop_valed(machine.valed)
        for ns in names:
            sh("ip", "netns", "del", ns, check=False)


def tunnel(machines: list[Machine], **extra: str) -> list[dict]:
    replies = []
    for k, m in enumerate(machines):
        argv = ["create", "vx0", "--vxlan", "--vni", "100", "--remote", UNDERLAY[1 - k],
                "--local", UNDERLAY[k], "--json"]
        for key, value in extra.items():
            argv += [f"--{key}", value]
        replies.append(json.loads(valectl(m.valed, *argv).stdout))
    return replies


def test_hosts_on_two_machines_share_a_segment_over_vxlan(machines):
    a, b = machines
    replies = tunnel(machines)
    assert all("warnings" not in r for r in replies)
    assert a.host.ping(b.host, count=3, size=1472)           # a full 1500-byte frame
    server = b.host.popen("iperf3", "-s", "-1", stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while "5201" not in b.host.run("ss", "-Hltn", check=False).stdout:
            assert time.monotonic() < deadline, "iperf3 -s did not listen"
            time.sleep(0.1)
        out = a.host.run("iperf3", "-c", b.host.ip, "-t", "2", "-J", check=False)
    finally:
        server.kill()
        server.wait()
    assert out.returncode == 0, out.stdout[-2000:]
    assert json.loads(out.stdout)["end"]["sum_received"]["bytes"] > 1_000_000
    for m, far in ((a, b), (b, a)):
        fdb = m.valed("fdb_show", switch="vale0")
        assert {"mac": far.host.mac, "port": "vx0"}.items() <= next(
            e for e in fdb if e["mac"] == far.host.mac).items()
        assert m.valed("stats", target="vale0:vx0")[0]["ports"]["vx0"]["rx_packets"] > 100


def test_a_vlan_is_carried_across_the_tunnel(machines):
    a, b = machines
    tunnel(machines)
    for m in machines:
        m.valed.ctl("set", f"vale0:{m.host.port}", "vlan=access:10")
        m.valed.ctl("set", "vale0:vx0", "vlan=trunk:10,20")
    assert a.host.ping(b.host)
    b.valed.ctl("set", f"vale0:{b.host.port}", "vlan=access:20")
    assert not a.host.ping(b.host, count=2, timeout=1)


def test_an_underlay_too_small_for_the_switchs_frames_gets_a_warning(machines):
    a, b = machines
    for m in machines:
        sh("ip", "-n", m.ns, "link", "set", m.underlay, "mtu", "1500")
    (reply, _) = tunnel(machines)
    assert "MTU 1450" in reply["warnings"][0]
    assert "MTU 1450" in a.valed.log.read_text()
    assert a.host.ping(b.host, count=2)                       # small frames cross


@pytest.mark.parametrize("argv, error", [
    (["--vni", "0", "--remote", "198.19.0.2"], "a VNI is 1 to 16777215"),
    (["--vni", "16777216", "--remote", "198.19.0.2"], "a VNI is 1 to 16777215"),
    (["--vni", "5", "--remote", "198.19.0.2", "--dstport", "70000"], "a UDP port is 1"),
    (["--vni", "5", "--remote", "224.0.0.1"], "not a unicast address"),
    (["--vni", "5", "--remote", "198.18.200.9"], "no route to 198.18.200.9"),
])
def test_a_bad_vxlan_is_refused_and_nothing_is_made(machines, argv, error):
    a = machines[0]
    result = valectl(a.valed, "create", "vx9", "--vxlan", *argv, check=False)
    assert result.returncode != 0 and error in result.stderr, result.stderr
    assert sh("ip", "-n", a.ns, "link", "show", "vx9", check=False).returncode != 0
    assert "vx9" not in valectl(a.valed, "list").stdout
