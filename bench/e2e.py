"""The end-to-end benchmark: vale against the Linux bridge and Open vSwitch, between real hosts.

    .venv/bin/python bench/e2e.py [--json] [--runs 3] [--quick] [--vale-set KEY=VALUE ...]

Two hosts, each a network namespace with a veth pair whose other end sits in a switch
namespace of this run's own; the switch under test joins those two ends. The switch
namespace stands where the brief's root namespace would: the veth ends behave the same, and
whatever a switch makes there (Open vSwitch's netdev datapath creates `ovs-netdev` and a TAP
per bridge) lives and dies with it, so the root namespace is never touched. The switches:

  vale       valed (its own socket and state in a temporary directory), both ends attached
  bridge     a Linux bridge, STP off
  ovs        Open vSwitch's userspace datapath (datapath_type=netdev) with
             other_config:userspace-tso-enable=true; its own ovsdb-server and
             ovs-vswitchd, private run/db/log directories
  ovs-notso  the same without userspace TSO

They alternate within each run (vale, bridge, ovs, ovs-notso, vale, ...), re-wiring the same
hosts, and the medians over the runs are compared. Per switch and run:

  rtt_ms         ping -c 200 -i 0.005, average
  tcp_gbps       iperf3, one TCP stream, default offloads, -t 5, received
  pps_delivered  60-byte frames (64 with FCS: UDP to B, known unicast) from trafgen at full
                 rate on A (TX ring, qdisc bypass, one process), counted at B's eth0
                 (rx_packets) over the send window; pps_sent is A's eth0 tx_packets (what the
                 switch's input port accepted) over the same window
  rss_mib_2      resident memory (VmRSS) of valed / ovs-vswitchd with the two ports

and once, at the end, valed's resident memory with 32 hosts attached (rss_mib_32) after
pings among them. With vale, the switch's counters over the pps window are reported too
(vale_pps_counters): where frames were dropped says where the bottleneck is.

Everything this run makes is named vb<pid>...: namespaces vb<pid>sw, vb<pid>hNN, ports
vb<pid>pNN, bridges vb<pid>br / vb<pid>ovs, and /tmp/vb<pid>-*; it is all removed at the end,
also on failure, Ctrl-C, SIGTERM or SIGHUP, and leftovers of earlier runs whose process is
gone are removed at the start. Addresses come from 198.18.0.0/15 only. Needs root.

The targets in the closing summary are goals, not tests: the exit code is 0 unless
something crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))

from vale.client import ClientError, call  # noqa: E402  (this tree's vale)

PREFIX = f"vb{os.getpid()}"                 # + hNN / pNN / sw / br / ovs: at most 15 bytes
_OURS_NS = re.compile(r"^vb(\d+)(sw|h\d{2})$")
_OURS_TMP = re.compile(r"^vb(\d+)-")
SWITCH_NS = f"{PREFIX}sw"
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DROP_REASONS = ("ring_full", "runt", "own_port", "too_big", "learn_limit", "learn_banned",
                "bad_offload", "tx_error")
UDP_PORT = 9                                # discard: nobody listens, B's stack drops them
MIB = 1024 * 1024

METRICS = {                                 # name: (unit, better)
    "tcp_gbps": ("Gbit/s", "higher"),
    "pps_delivered": ("frames/s", "higher"),
    "pps_sent": ("frames/s", "higher"),
    "rtt_ms": ("ms", "lower"),
    "rss_mib_2": ("MiB", "lower"),
}
TARGETS = {                                 # summary key: (metric, goal, how it is compared)
    "tcp": ("tcp_gbps", 0.95, "vale/bridge >= 0.95"),
    "pps_64": ("pps_delivered", 1.3, "vale/bridge >= 1.3"),
    "rtt": ("rtt_ms", 2.0, "vale/bridge <= 2"),
    "rss_32_ports": ("rss_mib_32", 1024.0, "valed VmRSS with 32 ports < 1024 MiB"),
}


@dataclass(frozen=True)
class Durations:
    tcp_s: int
    pps_s: float
    pings: int


FULL = Durations(tcp_s=5, pps_s=3.0, pings=200)
QUICK = Durations(tcp_s=2, pps_s=1.0, pings=50)


def log(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


# -- commands -----------------------------------------------------------------------------

def sh(*cmd: str, check: bool = True, timeout: float = 60,
       env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-800:]}")
    return result


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rss_mib(pid: int) -> float:
    """VmRSS of a process, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


# -- what this run owns, and its teardown --------------------------------------------------

@dataclass
class Lab:
    """Everything this run made: namespaces, daemons, one temporary directory."""
    tmp: Path
    namespaces: list[str] = field(default_factory=list)
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None,
              ) -> subprocess.Popen[bytes]:
        """A daemon in the foreground, in a session of its own (a Ctrl-C reaches only us,
        and we stop it), its output in tmp/NAME.log, its PID in tmp/NAME.pid."""
        with (self.tmp / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    start_new_session=True)
        (self.tmp / f"{name}.pid").write_text(str(proc.pid))
        self.daemons[name] = proc
        return proc

    def stop(self, name: str) -> None:
        """SIGTERM, then SIGKILL after 10 s; by PID only."""
        proc = self.daemons.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        (self.tmp / f"{name}.pid").unlink(missing_ok=True)

    def teardown(self) -> None:
        for name in list(self.daemons):
            self.stop(name)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def kill_leftover_daemons(tmp: Path) -> None:
    """Daemons an earlier run started (PID files in its directory), if still running that
    run's command line."""
    for pidfile in tmp.glob("*.pid"):
        try:
            pid = int(pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (ValueError, OSError):
            continue
        if str(tmp) in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def remove_leftovers() -> None:
    """Namespaces, daemons and directories of earlier runs whose process is gone."""
    def dead_run(match: re.Match[str] | None) -> bool:
        return match is not None and not alive(int(match.group(1)))
    for entry in Path(tempfile.gettempdir()).iterdir():
        if entry.is_dir() and dead_run(_OURS_TMP.match(entry.name)):
            kill_leftover_daemons(entry)
            shutil.rmtree(entry, ignore_errors=True)
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if dead_run(_OURS_NS.match(name)):
            sh("ip", "netns", "del", name, check=False)


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as Ctrl-C does; the teardown that follows is not
    interrupted by a second one."""
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")
    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        del previous


# -- hosts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Host:
    ns: str                                 # its namespace
    port: str                               # the switch-side veth end, in SWITCH_NS
    ip: str
    mac: str

    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            ) -> subprocess.CompletedProcess[str]:
        return sh(*in_ns(self.ns, *cmd), check=check, timeout=timeout)

    def popen(self, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(in_ns(self.ns, *cmd), text=True, **kw)

    def stat(self, name: str) -> int:
        return int(self.run("cat", f"/sys/class/net/eth0/statistics/{name}").stdout)


def make_switch_ns(lab: Lab) -> None:
    """The namespace holding the switch-side veth ends (and the bridges): no IPv6 chatter."""
    sh("ip", "netns", "add", SWITCH_NS)
    lab.namespaces.append(SWITCH_NS)
    for key in ("all", "default"):
        sh(*in_ns(SWITCH_NS, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"))
    sh("ip", "-n", SWITCH_NS, "link", "set", "lo", "up")


def make_host(lab: Lab, i: int) -> Host:
    """Host i: namespace vb<pid>hNN, eth0 at 198.18.0.i/16, its peer vb<pid>pNN in the switch
    namespace, up and attached to nothing. No IPv6, so no neighbour discovery noise."""
    ns, port = f"{PREFIX}h{i:02d}", f"{PREFIX}p{i:02d}"
    sh("ip", "netns", "add", ns)
    lab.namespaces.append(ns)
    for key in ("all", "default"):
        sh(*in_ns(ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"))
    sh("ip", "-n", SWITCH_NS, "link", "add", port, "type", "veth", "peer", "name", "eth0",
       "netns", ns)
    sh("ip", "-n", SWITCH_NS, "link", "set", port, "up")
    ip = f"198.18.0.{i}"
    sh("ip", "-n", ns, "addr", "add", f"{ip}/16", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    mac = sh(*in_ns(ns, "cat", "/sys/class/net/eth0/address")).stdout.strip()
    return Host(ns, port, ip, mac)


def remove_host(lab: Lab, host: Host) -> None:
    sh("ip", "netns", "del", host.ns, check=False)      # takes the veth pair with it
    if host.ns in lab.namespaces:
        lab.namespaces.remove(host.ns)


# -- the switches -------------------------------------------------------------------------

class Switch:
    """A switch under test: wire() joins the hosts' ports, unwire() lets them go."""
    name = ""

    def wire(self, hosts: list[Host]) -> None:
        raise NotImplementedError

    def unwire(self) -> None:
        raise NotImplementedError

    def pid(self) -> int | None:
        """The process doing the switching, if there is one."""
        return None


class Vale(Switch):
    name = "vale"

    def __init__(self, lab: Lab, settings: dict[str, str]) -> None:
        self.lab = lab
        self.sock = str(lab.tmp / "valed.sock")
        self.settings = settings
        self.ports: list[str] = []
        self.proc = lab.start("valed", in_ns(
            SWITCH_NS, sys.executable, "-m", "vale.daemon", "--foreground", "--socket",
            self.sock, "--state-dir", str(lab.tmp / "valed-state"), "--no-metrics"))
        deadline = time.monotonic() + 15
        while True:
            try:
                self.call("version")
                return
            except ClientError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("valed did not start: "
                                       + (lab.tmp / "valed.log").read_text()[-800:]) from None
                time.sleep(0.05)

    def call(self, op: str, **args: Any) -> Any:
        return call(op, args, path=self.sock)

    def wire(self, hosts: list[Host]) -> None:
        for host in hosts:
            self.call("attach", port=f"vale0:{host.port}")
            self.ports.append(host.port)
        if self.settings:
            self.call("set", target="vale0", settings=self.settings)

    def unwire(self) -> None:
        while self.ports:
            self.call("detach", port=f"vale0:{self.ports.pop()}")

    def pid(self) -> int | None:
        return self.proc.pid

    def counters(self) -> dict[str, dict[str, Any]]:
        return self.call("stats", target="vale0")[0]["ports"]


class Bridge(Switch):
    name = "bridge"

    def __init__(self) -> None:
        self.bridge = f"{PREFIX}br"

    def wire(self, hosts: list[Host]) -> None:
        sh("ip", "-n", SWITCH_NS, "link", "add", self.bridge, "type", "bridge", "stp_state", "0")
        for host in hosts:
            sh("ip", "-n", SWITCH_NS, "link", "set", host.port, "master", self.bridge)
        sh("ip", "-n", SWITCH_NS, "link", "set", self.bridge, "up")

    def unwire(self) -> None:
        sh("ip", "-n", SWITCH_NS, "link", "del", self.bridge, check=False)


class OvsDb:
    """This run's own ovsdb-server: a fresh database, private directories."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.dir = lab.tmp / "ovs"
        self.dir.mkdir()
        self.sock = self.dir / "db.sock"
        self.env = {**os.environ, **{f"OVS_{d}": str(self.dir) for d in
                                     ("RUNDIR", "DBDIR", "LOGDIR", "SYSCONFDIR")}}
        db = self.dir / "conf.db"
        sh("ovsdb-tool", "create", str(db), str(OVS_SCHEMA), env=self.env)
        lab.start("ovsdb", ["ovsdb-server", str(db), f"--remote=punix:{self.sock}",
                            f"--unixctl={self.dir / 'ovsdb.ctl'}", "--no-chdir",
                            f"--log-file={self.dir / 'ovsdb-server.log'}"], env=self.env)
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("ovsdb-server did not start: "
                                   + (lab.tmp / "ovsdb.log").read_text()[-800:])
            time.sleep(0.05)
        self.vsctl("--no-wait", "init")

    def vsctl(self, *args: str) -> str:
        return sh("ovs-vsctl", f"--db=unix:{self.sock}", "--timeout=30", *args,
                  env=self.env).stdout


class Ovs(Switch):
    """ovs-vswitchd started fresh for every turn (userspace TSO is read at start), in the
    switch namespace, the kernel datapath disabled."""

    def __init__(self, db: OvsDb, tso: bool) -> None:
        self.db = db
        self.tso = tso
        self.name = "ovs" if tso else "ovs-notso"
        self.bridge = f"{PREFIX}ovs"
        self.proc: subprocess.Popen[bytes] | None = None

    def start_vswitchd(self) -> None:
        tso = "true" if self.tso else "false"
        self.db.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                      f"other_config:userspace-tso-enable={tso}")
        log_file = self.db.dir / "ovs-vswitchd.log"
        start = log_file.stat().st_size if log_file.exists() else 0
        self.proc = self.db.lab.start("vswitchd", in_ns(
            SWITCH_NS, "ovs-vswitchd", f"unix:{self.db.sock}", "--disable-system", "--no-chdir",
            f"--unixctl={self.db.dir / 'vswitchd.ctl'}", f"--log-file={log_file}"),
            env=self.db.env)
        self.db.vsctl("add-br", self.bridge, "--", "set", "bridge", self.bridge,
                      "datapath_type=netdev")
        said = log_file.read_text()[start:]
        if self.tso != ("TCP Segmentation Offloading support enabled" in said):
            raise RuntimeError(f"ovs-vswitchd did not take userspace-tso-enable={tso}")

    def wire(self, hosts: list[Host]) -> None:
        self.start_vswitchd()
        for host in hosts:
            self.db.vsctl("add-port", self.bridge, host.port)

    def unwire(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.db.vsctl("--if-exists", "del-br", self.bridge)
        self.db.lab.stop("vswitchd")
        self.proc = None

    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


def start_ovs(lab: Lab) -> tuple[list[Switch], str]:
    """Both OVS variants, or none and why."""
    missing = [t for t in ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl")
               if shutil.which(t) is None]
    if missing:
        return [], f"not installed ({', '.join(missing)} not found)"
    if not OVS_SCHEMA.exists():
        return [], f"no schema at {OVS_SCHEMA}"
    try:
        db = OvsDb(lab)
        probe = Ovs(db, tso=True)
        probe.start_vswitchd()
        probe.unwire()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        lab.stop("vswitchd")
        return [], f"could not be started: {exc}"
    return [Ovs(db, tso=True), Ovs(db, tso=False)], "ok"


# -- measurements -------------------------------------------------------------------------

def wait_reachable(a: Host, b: Host, timeout: float = 20) -> None:
    """Ping both ways until it works: both MACs learned, B's known unicast from then on."""
    deadline = time.monotonic() + timeout
    while True:
        if (a.run("ping", "-c", "2", "-i", "0.1", "-W", "1", "-q", b.ip, check=False)
                .returncode == 0 and
                b.run("ping", "-c", "1", "-W", "1", "-q", a.ip, check=False).returncode == 0):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{a.ip} and {b.ip} cannot reach each other")
        time.sleep(0.2)


def measure_rtt(a: Host, b: Host, count: int) -> float:
    """ping -c COUNT -i 0.005: the average round trip, ms."""
    out = a.run("ping", "-c", str(count), "-i", "0.005", "-q", b.ip, timeout=60).stdout
    m = re.search(r"= [\d.]+/([\d.]+)/", out)
    if m is None:
        raise RuntimeError(f"no RTT in ping's output: {out}")
    return float(m.group(1))


def measure_tcp(a: Host, b: Host, seconds: int) -> float:
    """iperf3, one stream A to B, Gbit/s received."""
    server = b.popen("iperf3", "-s", "-1", "-p", "5201", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):             # until the server listens
            r = a.run("iperf3", "-c", b.ip, "-p", "5201", "-t", str(seconds), "-J",
                      check=False, timeout=seconds + 30)
            if r.returncode == 0:
                received = json.loads(r.stdout).get("end", {}).get("sum_received")
                if received:
                    return float(received["bits_per_second"]) / 1e9
            time.sleep(0.1)
        raise RuntimeError(f"iperf3 failed: {r.stdout[-500:]}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def trafgen_config(a: Host, b: Host) -> str:
    """One 60-byte frame (64 on the wire): Ethernet to B, IPv4, UDP to port 9, zero
    payload; IP checksum filled in by trafgen, UDP checksum 0 (none)."""
    def hexes(data: bytes) -> str:
        return ", ".join(f"0x{x:02x}" for x in data)
    mac = bytes.fromhex
    ip = bytes(int(x) for x in a.ip.split(".")), bytes(int(x) for x in b.ip.split("."))
    return (
        "{\n"
        f"  {hexes(mac(b.mac.replace(':', '')))},\n"
        f"  {hexes(mac(a.mac.replace(':', '')))},\n"
        "  c16(0x0800),\n"
        "  0x45, 0x00, c16(46), c16(0), c16(0x4000), 64, 17, csumip(14, 33),\n"
        f"  {hexes(ip[0])}, {hexes(ip[1])},\n"
        f"  c16(1024), c16({UDP_PORT}), c16(26), c16(0),\n"
        "  fill(0x00, 18)\n"
        "}\n")


def measure_pps(lab: Lab, a: Host, b: Host, seconds: float,
                during: Callable[[], None] | None = None) -> tuple[float, float]:
    """trafgen on A at full rate; frames per second sent by A's eth0 and received by B's,
    over SECONDS after a 0.5 s start. `during` is called at both ends of the window."""
    conf = lab.tmp / "udp64.trafgen"
    conf.write_text(trafgen_config(a, b))
    wait_reachable(a, b)                # B's MAC known: the frames are known unicast
    gen = a.popen("trafgen", "--dev", "eth0", "--conf", str(conf), "--cpus", "1",
                  "--no-sock-mem", "--notouch-irq", "--no-cpu-stats",
                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(0.5)
        if gen.poll() is not None:
            raise RuntimeError(f"trafgen exited {gen.returncode}: {gen.communicate()[0][-800:]}")
        if during:
            during()
        sent0, got0, t0 = a.stat("tx_packets"), b.stat("rx_packets"), time.monotonic()
        time.sleep(seconds)
        sent1, got1, t1 = a.stat("tx_packets"), b.stat("rx_packets"), time.monotonic()
        if during:
            during()
    finally:
        if gen.poll() is None:
            gen.send_signal(signal.SIGINT)
            try:
                gen.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.communicate()
    return (sent1 - sent0) / (t1 - t0), (got1 - got0) / (t1 - t0)


def counter_delta(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]],
                  ) -> dict[str, dict[str, int]]:
    """Per port: packets in and out, and the drops by reason that moved, over a window."""
    delta: dict[str, dict[str, int]] = {}
    for port, now in after.items():
        then = before.get(port, {})
        row = {key: now[key] - then.get(key, 0) for key in ("rx_packets", "tx_packets")
               if key in now}
        drops_now, drops_then = now.get("drops", {}), then.get("drops", {})
        for reason in DROP_REASONS:
            moved = drops_now.get(reason, 0) - drops_then.get(reason, 0)
            if moved:
                row[f"drop_{reason}"] = moved
        delta[port] = row
    return delta


def measure_turn(lab: Lab, switch: Switch, hosts: list[Host], dur: Durations,
                 ) -> tuple[dict[str, float], dict[str, dict[str, int]] | None]:
    """Wire the switch, measure everything on it, unwire it."""
    a, b = hosts
    switch.wire(hosts)
    try:
        wait_reachable(a, b)
        result = {"rtt_ms": measure_rtt(a, b, dur.pings),
                  "tcp_gbps": measure_tcp(a, b, dur.tcp_s)}
        snapshots: list[dict[str, dict[str, Any]]] = []
        during = (lambda: snapshots.append(switch.counters())) if isinstance(switch, Vale) \
            else None
        result["pps_sent"], result["pps_delivered"] = measure_pps(lab, a, b, dur.pps_s, during)
        pid = switch.pid()
        if pid is not None:
            result["rss_mib_2"] = rss_mib(pid)
        counters = counter_delta(*snapshots) if snapshots else None
    finally:
        switch.unwire()
    return result, counters


def measure_rss_32(lab: Lab, vale: Vale, hosts: list[Host]) -> float:
    """valed's VmRSS with 32 hosts attached, after pings between a few pairs."""
    extra = [make_host(lab, i) for i in range(len(hosts) + 1, 33)]
    every = hosts + extra
    try:
        vale.wire(every)
        pairs = [(every[i], every[-1 - i]) for i in range(0, 16, 3)]
        procs = [src.popen("ping", "-c", "3", "-i", "0.1", "-W", "2", "-q", dst.ip,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for src, dst in pairs]
        failed = sum(p.wait(timeout=30) != 0 for p in procs)
        if failed:
            log(f"32 ports: {failed} of {len(pairs)} pings failed")
        return rss_mib(vale.proc.pid)
    finally:
        vale.unwire()
        for host in extra:
            remove_host(lab, host)


# -- the run ------------------------------------------------------------------------------

def median_lines(results: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    lines = []
    for metric in METRICS:
        for switch, by_metric in results.items():
            runs = by_metric.get(metric)
            if runs:
                lines.append({"metric": metric, "switch": switch, "unit": METRICS[metric][0],
                              "median": statistics.median(runs), "runs": runs})
    return lines


def ratio_lines(results: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    lines = []
    for metric in METRICS:
        if not results.get("vale", {}).get(metric):
            continue
        vale = statistics.median(results["vale"][metric])
        line: dict[str, Any] = {"metric": metric}
        for peer in ("bridge", "ovs", "ovs-notso"):
            runs = results.get(peer, {}).get(metric)
            if runs and statistics.median(runs):
                line[f"ratio_vale_to_{peer.replace('-', '_')}"] = vale / statistics.median(runs)
        if len(line) > 1:
            lines.append(line)
    return lines


def summary_line(results: dict[str, dict[str, list[float]]], rss_32: float | None,
                 generator: str, ovs_status: str, runs: int) -> dict[str, Any]:
    def ratio(metric: str) -> float | None:
        vale, bridge = results["vale"].get(metric), results["bridge"].get(metric)
        if not vale or not bridge or not statistics.median(bridge):
            return None
        return statistics.median(vale) / statistics.median(bridge)
    summary: dict[str, Any] = {}
    for key, (metric, goal, text) in TARGETS.items():
        if key == "rss_32_ports":
            value, met = rss_32, rss_32 is not None and rss_32 < goal
        else:
            value = ratio(metric)
            better_higher = METRICS[metric][1] == "higher"
            met = value is not None and (value >= goal if better_higher else value <= goal)
        summary[key] = {"target": text, "value": value, "met": met}
    return {"summary": summary, "all_met": all(s["met"] for s in summary.values()),
            "runs": runs, "pps_generator": generator, "ovs": ovs_status,
            "cpus": os.cpu_count()}


def print_table(lines: list[dict[str, Any]]) -> None:
    medians = [x for x in lines if "median" in x]
    switches = list(dict.fromkeys(x["switch"] for x in medians))
    print(f"{'metric':<16}" + "".join(f"{s:>14}" for s in switches))
    for metric, (unit, better) in METRICS.items():
        row = {x["switch"]: x["median"] for x in medians if x["metric"] == metric}
        if row:
            cells = "".join(f"{row[s]:>14.4g}" if s in row else f"{'-':>14}" for s in switches)
            print(f"{metric:<16}{cells}   {unit}, {better} is better")
    for x in lines:
        if "median" not in x and "metric" in x and x["metric"] not in ("vale_pps_counters",):
            ratios = ", ".join(f"{k[6:]} {v:.3g}" for k, v in x.items() if k != "metric")
            print(f"{x['metric']:<16}{ratios}")
        elif x.get("metric") == "vale_pps_counters":
            print(f"vale counters over the pps window, run {x['run']}: {x['ports']}")
        elif "median" not in x and "summary" in x:
            for key, s in x["summary"].items():
                value = "n/a" if s["value"] is None else f"{s['value']:.4g}"
                print(f"target {key:<13}{s['target']:<40} {value:>10}  "
                      f"{'met' if s['met'] else 'NOT met'}")
            print(f"pps generator: {x['pps_generator']}; ovs: {x['ovs']}; "
                  f"runs: {x['runs']}; cpus: {x['cpus']}")


def run(args: argparse.Namespace, lab: Lab) -> list[dict[str, Any]]:
    dur = QUICK if args.quick else FULL
    runs = 1 if args.quick else args.runs
    if shutil.which("trafgen") is None:
        raise RuntimeError("trafgen (netsniff-ng) is not installed")
    make_switch_ns(lab)
    hosts = [make_host(lab, 1), make_host(lab, 2)]
    vale = Vale(lab, dict(s.split("=", 1) for s in args.vale_set))
    switches: list[Switch] = [vale, Bridge()]
    ovs, ovs_status = start_ovs(lab) if not args.no_ovs else ([], "skipped: --no-ovs")
    if not ovs:
        log(f"Open vSwitch skipped: {ovs_status}")
    switches += ovs
    results: dict[str, dict[str, list[float]]] = {s.name: {} for s in switches}
    lines: list[dict[str, Any]] = []
    for i in range(runs):
        for switch in switches:
            log(f"run {i + 1}/{runs}: {switch.name}")
            measured, counters = measure_turn(lab, switch, hosts, dur)
            log(f"  {json.dumps(measured)}")
            for metric, value in measured.items():
                results[switch.name].setdefault(metric, []).append(round(value, 4))
            if counters is not None:
                lines.append({"metric": "vale_pps_counters", "run": i + 1, "ports": counters})
    log("32 ports on vale")
    rss_32 = measure_rss_32(lab, vale, hosts)
    lines = median_lines(results) + [
        {"metric": "rss_mib_32", "switch": "vale", "unit": "MiB", "median": round(rss_32, 1),
         "runs": [round(rss_32, 1)]}] + lines + ratio_lines(results)
    lines.append(summary_line(results, rss_32, "trafgen (TX ring, qdisc bypass, 1 process)",
                              ovs_status, runs))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--runs", type=int, default=3, help="runs (medians over them)")
    parser.add_argument("--quick", action="store_true", help="one short run: a smoke test")
    parser.add_argument("--no-ovs", action="store_true", help="leave Open vSwitch out")
    parser.add_argument("--vale-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a vale0 setting for every vale turn (e.g. cpus=1)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("e2e: needs root (network namespaces, veth pairs, packet sockets)",
              file=sys.stderr)
        return 1
    remove_leftovers()
    lab = Lab(Path(tempfile.mkdtemp(prefix=f"{PREFIX}-")))
    try:
        with signals_as_interrupt():
            lines = run(args, lab)
    finally:
        lab.teardown()
    for line in lines:
        if args.json:
            print(json.dumps(line))
    if not args.json:
        print_table(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
