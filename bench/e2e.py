"""The end-to-end benchmark: vale against the Linux bridge and Open vSwitch, between real hosts.

    .venv/bin/python bench/e2e.py [--json] [--runs 5] [--quick] [--no-ovs] [--no-core]
                                  [--no-bare] [--bare-v3] [--pps-frame raw]
                                  [--vale-set KEY=VALUE ...]

Two hosts, each a network namespace with a veth pair whose other end sits in a switch
namespace of this run's own; the switch under test joins those two ends. The switch
namespace stands where the brief's root namespace would: the veth ends behave the same, and
whatever a switch makes there (Open vSwitch's netdev datapath creates `ovs-netdev` and a TAP
per bridge) lives and dies with it, so the root namespace is never touched. The switches:

  vale       valed (its own socket and state in a temporary directory), both ends attached,
             default settings: the forwarding thread sleeps in epoll when it has nothing to
             do and runs wherever the scheduler puts it
  vale-core  the same valed with vale0 set up as a switch with a core of its own: the thread
             pinned to the last CPU and busy-polling (cpus=N-1, busy_poll_us=1000000), so
             no frame waits for it to be woken (on this kind of VM a wake-up across vCPUs
             costs tens of microseconds per hop); leave it out with --no-core
  bare       bench/afpacket_bare.c (built with gcc into the run's directory): a bare
             AF_PACKET switch between two ports, with the same packet sockets and receive
             rings as vale and nothing else: no learning, no lookup, no checks, no
             counters, no TX ring; it sleeps in epoll like vale. A reference for what packet
             sockets themselves cost here, not a bound: vale's TX ring makes short frames
             cheaper than the bare switch sends them. Leave it out with --no-bare
  bare-v3    with --bare-v3: the bare switch with TPACKET_V3 receive rings (1 ms block
             timeout), which wake the reader per block, not per frame: why vale's are V2
  bridge     a Linux bridge, STP off
  ovs        Open vSwitch's userspace datapath (datapath_type=netdev) with
             other_config:userspace-tso-enable=true; its own ovsdb-server and
             ovs-vswitchd, private run/db/log directories
  ovs-notso  the same without userspace TSO

They alternate within each run (vale, vale-core, bare, bridge, ovs, ovs-notso, vale, ...),
re-wiring the same hosts, and the medians over the runs are compared. Per switch and run:

  rtt_ms         ping -c 200 -i 0.005, average
  tcp_gbps       iperf3, one TCP stream, default offloads, -t 5, received
  tcp_busy_cpus  CPUs busy (/proc/stat, the whole machine) from iperf3's start to its end;
                 tcp_gbps_per_cpu is tcp_gbps over it: what each switch's path costs per
                 bit. When both switches keep every CPU busy, the ratio of these is the
                 ratio of their throughputs: a switch that copies each frame twice more
                 than the bridge cannot keep up with it on a machine it fills.
  pps_delivered  60-byte frames (64 with FCS), known unicast to B, from trafgen at full rate
                 on A (TX ring, qdisc bypass, one process: on CPU 0), counted at B's eth0
                 (rx_packets) over the send window; pps_sent is A's eth0 tx_packets (what the
                 switch's input port accepted) over the same window. The frames are UDP
                 to a closed port, as the issue asks: B routes each one and tries (rate-
                 limited) to answer it with an ICMP port unreachable, work that falls on
                 whichever CPU delivers to B: the sender's with the bridge (which runs in
                 the sender's softirq), the forwarding thread's with vale. With
                 --pps-frame raw they are raw Ethernet (ethertype 0x88b5), which B drops at
                 once: that measures the switching path alone, where vale's gain is smaller.
  rss_mib_2      resident memory (VmRSS) of valed / ovs-vswitchd with the two ports
  background_cpus  CPUs busy over 0.5 s just before the turn, while this run is idle: what
                 other users of the machine take (results with it well above 0 wobble)

and once, at the end, valed's resident memory with 32 hosts attached (rss_mib_32) after
pings among them. With vale, the switch's counters over the pps window are reported too
(vale_pps_counters): where frames were dropped says where the bottleneck is; `valectl stats`
after each vale turn goes to stderr with the progress.

Everything this run makes is named vb<pid>...: namespaces vb<pid>sw, vb<pid>hNN, ports
vb<pid>pNN, bridges vb<pid>br / vb<pid>ovs, and /tmp/vb<pid>-*; it is all removed at the end,
also on failure, Ctrl-C, SIGTERM or SIGHUP, and leftovers of earlier runs whose process is
gone are removed at the start. Addresses come from 198.18.0.0/15 only. Needs root.

The targets in the closing summary are goals, not tests: the exit code is 0 unless
something crashed. They are judged for the bare switch too: a target that it misses as
well, in the same run, is one that packet sockets themselves stand in the way of.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
from vale.demo import iperf3_gbps  # noqa: E402

PREFIX = f"vb{os.getpid()}"                 # + hNN / pNN / sw / br / ovs: at most 15 bytes
_OURS_NS = re.compile(r"^vb(\d+)(sw|h\d{2})$")
_OURS_TMP = re.compile(r"^vb(\d+)-")
SWITCH_NS = f"{PREFIX}sw"
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DROP_REASONS = ("ring_full", "runt", "own_port", "too_big", "learn_limit", "learn_banned",
                "bad_offload", "tx_error")
UDP_PORT = 9                                # discard: nobody listens
RAW_ETHERTYPE = 0x88B5                      # IEEE local experimental: no handler at B

METRICS = {                                 # name: (unit, which is better; "": neither)
    "tcp_gbps": ("Gbit/s", "higher"),
    "tcp_busy_cpus": ("CPUs", ""),
    "tcp_gbps_per_cpu": ("Gbit/s per busy CPU", "higher"),
    "pps_delivered": ("frames/s", "higher"),
    "pps_sent": ("frames/s", "higher"),
    "rtt_ms": ("ms", "lower"),
    "rss_mib_2": ("MiB", "lower"),
    "background_cpus": ("CPUs", ""),
}
NEITHER = {                                 # what the metrics with no better side say
    "tcp_busy_cpus": "busy from iperf3's start to its end, all users",
    "background_cpus": "busy before the turn: not this run",
}
VALES = ("vale", "vale-core")               # the vale configurations a run compares
COMPARED = (*VALES, "bare", "bare-v3")      # what the ratios to the peers are given for
BARE_SOURCE = BENCH / "afpacket_bare.c"


def core_settings() -> dict[str, str]:
    """vale-core: the forwarding thread on the last CPU (trafgen sends from CPU 0) and
    busy-polling for up to a second after each frame, so that it is never woken: the way
    a switch with a core of its own runs (vale-ctl -p, OVS-DPDK's PMD threads)."""
    return {"cpus": str((os.cpu_count() or 1) - 1), "busy_poll_us": "1000000"}


TARGETS = {                                 # summary key: (metric, goal, how it is compared)
    "tcp": ("tcp_gbps", 0.95, "ratio to the bridge >= 0.95"),
    "pps_64": ("pps_delivered", 1.3, "ratio to the bridge >= 1.3"),
    "rtt": ("rtt_ms", 2.0, "ratio to the bridge <= 2"),
    "rss_32_ports": ("rss_mib_32", 1024.0, "valed VmRSS with 32 ports < 1024 MiB"),
}


@dataclass(frozen=True)
class Plan:
    tcp_s: int
    pps_s: float
    pings: int
    pps_frame: str = "udp"                  # or "raw": see trafgen_config


FULL = Plan(tcp_s=5, pps_s=3.0, pings=200)
QUICK = Plan(tcp_s=2, pps_s=1.0, pings=50)


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


def cpu_times() -> tuple[int, int]:
    """The machine's CPU time so far (/proc/stat, all CPUs): total, and idle + iowait."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[:8]), fields[3] + fields[4]


def busy_since(before: tuple[int, int]) -> float:
    """CPUs' worth of time not idle since BEFORE, a cpu_times()."""
    (total0, idle0), (total1, idle1) = before, cpu_times()
    return (1 - (idle1 - idle0) / max(total1 - total0, 1)) * (os.cpu_count() or 1)


def busy_cpus(seconds: float = 0.5) -> float:
    """CPUs busy over SECONDS: taken while this run is quiet, it is what other users of
    the machine are taking from it."""
    before = cpu_times()
    time.sleep(seconds)
    return busy_since(before)


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
        and we stop it), its output in tmp/NAME.log."""
        with (self.tmp / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    start_new_session=True)
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

    def teardown(self) -> None:
        for name in list(self.daemons):
            self.stop(name)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)


def kill_leftover_processes(tmp: Path) -> None:
    """Processes an earlier run started and left behind: valed, the OVS daemons, trafgen,
    all of which name that run's own directory on their command line."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(arg.startswith(f"{tmp}/") or f"={tmp}/" in arg or f":{tmp}/" in arg
               for arg in args):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(cmdline.parent.name), signal.SIGKILL)


def remove_leftovers() -> None:
    """Namespaces, daemons and directories of earlier runs whose process is gone."""
    def dead_run(match: re.Match[str] | None) -> bool:
        return match is not None and not alive(int(match.group(1)))
    for entry in Path(tempfile.gettempdir()).iterdir():
        if entry.is_dir() and dead_run(_OURS_TMP.match(entry.name)):
            kill_leftover_processes(entry)
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
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, interrupt)
    try:
        yield
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)


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


class Valed:
    """One valed for the whole run (its own socket and state in the run's directory)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.sock = str(lab.tmp / "valed.sock")
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


class Vale(Switch):
    """vale0 in valed with the given settings: a switch is made by its first attach and goes
    with its last port, so each turn starts from the defaults plus these settings."""

    def __init__(self, daemon: Valed, name: str, settings: dict[str, str]) -> None:
        self.daemon = daemon
        self.name = name
        self.settings = settings
        self.ports: list[str] = []

    def call(self, op: str, **args: Any) -> Any:
        return self.daemon.call(op, **args)

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
        return self.daemon.proc.pid

    def stats(self) -> dict[str, Any]:
        return dict(self.call("stats", target="vale0")[0])

    def valectl(self, *argv: str) -> str:
        return sh(sys.executable, "-m", "vale.cli.valectl", "--socket", self.daemon.sock,
                  *argv).stdout


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


class Bare(Switch):
    """bench/afpacket_bare.c between the two hosts' ports (-3: TPACKET_V3 rings)."""

    def __init__(self, lab: Lab, program: Path, v3: bool = False) -> None:
        self.lab = lab
        self.program = program
        self.options = ["-3"] if v3 else []
        self.name = "bare-v3" if v3 else "bare"

    def wire(self, hosts: list[Host]) -> None:
        a, b = hosts
        log_file = self.lab.tmp / f"{self.name}.log"
        seen = log_file.stat().st_size if log_file.exists() else 0     # earlier runs'
        proc = self.lab.start(self.name, in_ns(SWITCH_NS, str(self.program), *self.options,
                                               a.port, b.port))
        deadline = time.monotonic() + 10
        while b"afpacket_bare: ready" not in log_file.read_bytes()[seen:]:
            if proc.poll() is not None or time.monotonic() > deadline:
                self.unwire()
                raise RuntimeError("afpacket_bare did not start: "
                                   + log_file.read_bytes()[seen:].decode(errors="replace")[-400:])
            time.sleep(0.02)

    def unwire(self) -> None:
        self.lab.stop(self.name)


def build_bare(lab: Lab, v3: bool) -> tuple[list[Switch], str]:
    """The bare switch (and its V3 variant), compiled for this run, or none and why."""
    program = lab.tmp / "afpacket_bare"
    try:
        sh("gcc", "-O2", "-Wall", "-o", str(program), str(BARE_SOURCE), timeout=120)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return [], f"not built: {exc}"
    return [Bare(lab, program)] + ([Bare(lab, program, v3=True)] if v3 else []), \
        "built with gcc -O2"


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
    switch namespace, the kernel datapath disabled. Without userspace TSO, OVS takes frames
    from its AF_PACKET sockets without virtio-net headers, so TSO super-frames and partial
    checksums from the hosts arrive cut short or unchecksummed and TCP stalls (seen here:
    iperf3 timed out). The usual remedy (openvswitch/ovs-issues#273) is applied: the hosts'
    eth0 have transmit checksum offload, and TSO with it, turned off for the turn
    (`ethtool -K eth0 tx off`), and back on after."""

    def __init__(self, db: OvsDb, tso: bool) -> None:
        self.db = db
        self.tso = tso
        self.name = "ovs" if tso else "ovs-notso"
        self.bridge = f"{PREFIX}ovs"
        self.proc: subprocess.Popen[bytes] | None = None
        self.hosts: list[Host] = []

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
        if not self.tso:
            for host in hosts:
                self.hosts.append(host)
                host.run("ethtool", "-K", "eth0", "tx", "off")
        self.start_vswitchd()
        for host in hosts:
            self.db.vsctl("add-port", self.bridge, host.port)

    def unwire(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.db.vsctl("--if-exists", "del-br", self.bridge)
        self.db.lab.stop("vswitchd")
        self.proc = None
        while self.hosts:
            self.hosts.pop().run("ethtool", "-K", "eth0", "tx", "on")

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
    server = b.popen("iperf3", "-s", "-1", "-p", "5201", "--idle-timeout", "60",
                     stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
    try:
        for _ in range(50):             # until the server listens
            r = a.run("iperf3", "-c", b.ip, "-p", "5201", "-t", str(seconds), "-J",
                      check=False, timeout=seconds + 30)
            gbps = iperf3_gbps(r.stdout) if r.returncode == 0 else None
            if gbps is not None:
                return gbps
            time.sleep(0.1)
        raise RuntimeError(f"iperf3 failed: {r.stdout[-500:]}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def group_running(pgid: int) -> bool:
    """Whether a process of group PGID is running (zombies aside: init may be slow)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGINT to the process group PROC leads (started with start_new_session): trafgen
    forks its sender, and the parent does not pass a signal on to it. SIGKILL after 5 s."""
    for sig in (signal.SIGINT, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(0.05)
            if not group_running(proc.pid):
                proc.wait()
                return
    proc.wait()


def trafgen_config(a: Host, b: Host, kind: str) -> str:
    """One 60-byte frame (64 on the wire) from A to B. `raw`: ethertype 0x88b5 (local
    experimental), zeroes, which B's stack drops at once for want of a handler. `udp`: IPv4,
    UDP to port 9, where nobody listens, so that B's stack routes it and tries (rate-limited)
    to answer with an ICMP port unreachable; IP checksum by trafgen, UDP checksum 0."""
    def hexes(data: bytes) -> str:
        return ", ".join(f"0x{x:02x}" for x in data)
    macs = f"  {hexes(bytes.fromhex(b.mac.replace(':', '')))},\n" \
           f"  {hexes(bytes.fromhex(a.mac.replace(':', '')))},\n"
    if kind == "raw":
        return "{\n" + macs + f"  c16({RAW_ETHERTYPE:#06x}),\n  fill(0x00, 46)\n}}\n"
    src, dst = (bytes(int(x) for x in h.ip.split(".")) for h in (a, b))
    return (
        "{\n" + macs +
        "  c16(0x0800),\n"
        "  0x45, 0x00, c16(46), c16(0), c16(0x4000), 64, 17, csumip(14, 33),\n"
        f"  {hexes(src)}, {hexes(dst)},\n"
        f"  c16(1024), c16({UDP_PORT}), c16(26), c16(0),\n"
        "  fill(0x00, 18)\n"
        "}\n")


def measure_pps(lab: Lab, a: Host, b: Host, seconds: float, kind: str,
                during: Callable[[], None] | None = None) -> tuple[float, float]:
    """trafgen on A at full rate; frames per second sent by A's eth0 and received by B's,
    over SECONDS after a 0.5 s start. `during` is called at both ends of the window."""
    conf = lab.tmp / f"{kind}60.trafgen"
    conf.write_text(trafgen_config(a, b, kind))
    wait_reachable(a, b)                # B's MAC known: the frames are known unicast
    with (lab.tmp / "trafgen.log").open("w") as out:
        gen = a.popen("trafgen", "--dev", "eth0", "--conf", str(conf), "--cpus", "1",
                      "--no-sock-mem", "--notouch-irq", "--no-cpu-stats",
                      stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(0.5)
        if gen.poll() is not None:
            raise RuntimeError(f"trafgen exited {gen.returncode}: "
                               + (lab.tmp / "trafgen.log").read_text()[-800:])
        if during:
            during()
        sent0, got0, t0 = a.stat("tx_packets"), b.stat("rx_packets"), time.monotonic()
        time.sleep(seconds)
        sent1, got1, t1 = a.stat("tx_packets"), b.stat("rx_packets"), time.monotonic()
        if during:
            during()
    finally:
        stop_group(gen)
    return (sent1 - sent0) / (t1 - t0), (got1 - got0) / (t1 - t0)


def counter_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Over a window, from two `stats` of vale0: per port, packets in and out and the drops
    by reason that moved; batches, frames per batch and the batch-size histogram (buckets
    <=1, <=2, <=4 ... <=1024 frames), which says whether the thread found its rings full."""
    ports: dict[str, dict[str, int]] = {}
    for port, now in after["ports"].items():
        then = before["ports"].get(port, {})
        row = {key: now[key] - then.get(key, 0) for key in ("rx_packets", "tx_packets")}
        for reason in DROP_REASONS:
            moved = now["drops"].get(reason, 0) - then.get("drops", {}).get(reason, 0)
            if moved:
                row[f"drop_{reason}"] = moved
        ports[port] = row
    batches = after["batches"] - before["batches"]
    frames = after["batch_frames"] - before["batch_frames"]
    return {"ports": ports, "batches": batches,
            "frames_per_batch": round(frames / batches, 1) if batches else None,
            "batch_hist": [n - m for n, m in zip(after["batch_hist"], before["batch_hist"],
                                                 strict=True)]}


@dataclass
class Turn:
    """What one switch gave in one run."""
    measured: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    counters: dict[str, Any] | None = None      # vale's, over the pps window


def measure_turn(lab: Lab, switch: Switch, hosts: list[Host], plan: Plan) -> Turn:
    """Wire the switch, measure everything on it, unwire it. A measurement that fails is
    noted and the others go on."""
    a, b = hosts
    turn = Turn()
    snapshots: list[dict[str, Any]] = []
    during = (lambda: snapshots.append(switch.stats())) if isinstance(switch, Vale) \
        else None

    def pps() -> None:
        sent, delivered = measure_pps(lab, a, b, plan.pps_s, plan.pps_frame, during)
        turn.measured.update(pps_sent=sent, pps_delivered=delivered)

    def tcp() -> None:
        before = cpu_times()
        gbps = measure_tcp(a, b, plan.tcp_s)
        cpus = busy_since(before)
        turn.measured.update(tcp_gbps=gbps, tcp_busy_cpus=cpus,
                             tcp_gbps_per_cpu=gbps / max(cpus, 0.01))

    steps: dict[str, Callable[[], None]] = {
        "rtt_ms": lambda: turn.measured.update(rtt_ms=measure_rtt(a, b, plan.pings)),
        "tcp_gbps": tcp,
        "pps": pps,
    }
    turn.measured["background_cpus"] = busy_cpus()     # before this switch's own threads
    try:
        try:
            switch.wire(hosts)
            wait_reachable(a, b)
        except (RuntimeError, subprocess.TimeoutExpired, ClientError) as exc:
            log(f"  {switch.name}: wiring failed: {exc}")
            turn.errors["wire"] = str(exc)[:300]
            return turn
        for name, step in steps.items():
            try:
                step()
            except (RuntimeError, subprocess.TimeoutExpired, ClientError) as exc:
                log(f"  {switch.name}: {name} failed: {exc}")
                turn.errors[name] = str(exc)[:300]
        pid = switch.pid()
        if pid is not None:
            turn.measured["rss_mib_2"] = rss_mib(pid)
        if len(snapshots) == 2:
            turn.counters = counter_delta(*snapshots)
        if isinstance(switch, Vale):            # since the attach: ping, iperf3, trafgen
            log("  valectl stats after the pps run:\n" + switch.valectl("stats").rstrip())
    finally:
        switch.unwire()
    return turn


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
        return rss_mib(vale.daemon.proc.pid)
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


def median_ratio(results: dict[str, dict[str, list[float]]], mine: str, peer: str,
                 metric: str) -> float | None:
    """median(MINE's runs) / median(PEER's runs), or None when either is missing or 0."""
    vale, other = results.get(mine, {}).get(metric), results.get(peer, {}).get(metric)
    if not vale or not other or not statistics.median(other):
        return None
    return statistics.median(vale) / statistics.median(other)


def ratio_lines(results: dict[str, dict[str, list[float]]]) -> list[dict[str, Any]]:
    lines = []
    for metric in METRICS:
        for mine in COMPARED:
            if not METRICS[metric][1] or not results.get(mine, {}).get(metric):
                continue
            line: dict[str, Any] = {"metric": metric, "switch": mine}
            for peer in ("bridge", "ovs", "ovs-notso"):
                value = median_ratio(results, mine, peer, metric)
                if value is not None:
                    line[f"ratio_to_{peer.replace('-', '_')}"] = value
            # Each run's vale against the same run's bridge, turns a minute apart: less of
            # the machine's drift between runs than in the ratio of the medians.
            mine_runs, bridge_runs = results[mine][metric], results.get("bridge", {}).get(metric)
            if bridge_runs and len(bridge_runs) == len(mine_runs) and all(bridge_runs):
                line["paired_to_bridge"] = statistics.median(
                    m / b for m, b in zip(mine_runs, bridge_runs, strict=True))
            if len(line) > 2:
                lines.append(line)
    return lines


def summary_line(results: dict[str, dict[str, list[float]]], rss_32: float | None,
                 generator: str, ovs_status: str, bare_status: str, runs: int,
                 ) -> dict[str, Any]:
    """The targets, judged for each vale configuration in the run, and for the bare
    switches (which have no daemon: no memory target)."""
    summary: dict[str, dict[str, Any]] = {}
    for mine in (v for v in COMPARED if v in results):
        summary[mine] = {}
        for key, (metric, goal, text) in TARGETS.items():
            if key == "rss_32_ports" and mine not in VALES:
                continue
            if key == "rss_32_ports":
                value, met = rss_32, rss_32 is not None and rss_32 < goal
            else:
                value = median_ratio(results, mine, "bridge", metric)
                better_higher = METRICS[metric][1] == "higher"
                met = value is not None and (value >= goal if better_higher else value <= goal)
            summary[mine][key] = {"target": text, "value": value, "met": met}
    return {"summary": summary,
            "all_met": {mine: all(s["met"] for s in by_key.values())
                        for mine, by_key in summary.items() if mine in VALES},
            "vale_core_settings": core_settings(),
            "runs": runs, "pps_generator": generator, "ovs": ovs_status,
            "bare": bare_status,
            "cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()[0]}


def print_table(lines: list[dict[str, Any]]) -> None:
    """The lines as a readable table: medians, ratios, vale's counters, errors, targets."""
    medians = [x for x in lines if "median" in x]
    switches = list(dict.fromkeys(x["switch"] for x in medians))
    print(f"{'median':<18}" + "".join(f"{s:>14}" for s in switches))
    for metric in [*METRICS, "rss_mib_32"]:
        row = {x["switch"]: x["median"] for x in medians if x["metric"] == metric}
        if row:
            unit, better = METRICS.get(metric, ("MiB", "lower"))
            cells = "".join(f"{row[s]:>14.4g}" if s in row else f"{'-':>14}" for s in switches)
            note = f"{better} is better" if better else NEITHER[metric]
            print(f"{metric:<18}{cells}   {unit}, {note}")
    print()
    for x in lines:
        if any(k.startswith("ratio_") for k in x):
            ratios = ", ".join(f"{k.removeprefix('ratio_')} {v:.3g}" for k, v in x.items()
                               if k.startswith(("ratio_", "paired_")))
            print(f"{x['metric']:<18}{x['switch']:<10}{ratios}")
        elif x.get("metric") == "vale_pps_counters":
            print(f"{x['switch']} over the pps window, run {x['run']}: {x['ports']}, "
                  f"{x['batches']} batches, {x['frames_per_batch']} frames per batch, "
                  f"sizes (<=1, <=2, <=4 ... <=1024): {x['batch_hist']}")
        elif "error" in x:
            print(f"{x['switch']}, run {x['run']}: {x['error']} failed: {x['message']}")
        elif "summary" in x:
            for mine, by_key in x["summary"].items():
                print()
                for key, s in by_key.items():
                    value = "n/a" if s["value"] is None else f"{s['value']:.4g}"
                    print(f"{mine:<10} target {key:<13}{s['target']:<40}{value:>10}  "
                          f"{'met' if s['met'] else 'NOT met'}")
            print(f"vale-core: {x['vale_core_settings']}")
            print(f"pps generator: {x['pps_generator']}; ovs: {x['ovs']}; "
                  f"bare: {x['bare']}; "
                  f"runs: {x['runs']}; cpus: {x['cpus']}; "
                  f"load average at the end: {x['loadavg_at_end']:.2f}")


def run(args: argparse.Namespace, lab: Lab) -> list[dict[str, Any]]:
    plan = dataclasses.replace(QUICK if args.quick else FULL, pps_frame=args.pps_frame)
    runs = 1 if args.quick else args.runs
    if shutil.which("trafgen") is None:
        raise RuntimeError("trafgen (netsniff-ng) is not installed")
    make_switch_ns(lab)
    hosts = [make_host(lab, 1), make_host(lab, 2)]
    extra = dict(s.split("=", 1) for s in args.vale_set)
    daemon = Valed(lab)
    vale = Vale(daemon, "vale", extra)
    switches: list[Switch] = [vale]
    if not args.no_core:
        switches.append(Vale(daemon, "vale-core", {**core_settings(), **extra}))
    bare, bare_status = (build_bare(lab, args.bare_v3) if not args.no_bare
                         else ([], "--no-bare"))
    if not bare:
        log(f"the bare AF_PACKET switch skipped: {bare_status}")
    switches += [*bare, Bridge()]
    ovs, ovs_status = start_ovs(lab) if not args.no_ovs else ([], "--no-ovs")
    if not ovs:
        log(f"Open vSwitch skipped: {ovs_status}")
    switches += ovs
    results: dict[str, dict[str, list[float]]] = {s.name: {} for s in switches}
    lines: list[dict[str, Any]] = []
    for i in range(runs):
        for switch in switches:
            log(f"run {i + 1}/{runs}: {switch.name}")
            turn = measure_turn(lab, switch, hosts, plan)
            log(f"  {json.dumps(turn.measured)}")
            for metric, value in turn.measured.items():
                results[switch.name].setdefault(metric, []).append(round(value, 4))
            if turn.counters is not None:
                lines.append({"metric": "vale_pps_counters", "switch": switch.name,
                              "run": i + 1, **turn.counters})
            lines += [{"error": step, "switch": switch.name, "run": i + 1, "message": message}
                      for step, message in turn.errors.items()]
    log("32 ports on vale")
    rss_32 = round(measure_rss_32(lab, vale, hosts), 1)
    lines = [*median_lines(results),
             {"metric": "rss_mib_32", "switch": "vale", "unit": "MiB", "median": rss_32,
              "runs": [rss_32]},
             *lines, *ratio_lines(results)]
    generator = f"trafgen (TX ring, qdisc bypass, 1 process), {plan.pps_frame} 60-byte frames"
    lines.append(summary_line(results, rss_32, generator, ovs_status, bare_status, runs))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--runs", type=int, default=5, help="runs (medians over them)")
    parser.add_argument("--quick", action="store_true", help="one short run: a smoke test")
    parser.add_argument("--pps-frame", choices=("udp", "raw"), default="udp",
                        help="the 60-byte frames of the pps test (default udp: see above)")
    parser.add_argument("--no-ovs", action="store_true", help="leave Open vSwitch out")
    parser.add_argument("--no-core", action="store_true",
                        help="leave out vale-core (vale with a CPU of its own, busy-polling)")
    parser.add_argument("--no-bare", action="store_true",
                        help="leave out the bare AF_PACKET switch (bench/afpacket_bare.c)")
    parser.add_argument("--bare-v3", action="store_true",
                        help="add the bare switch with TPACKET_V3 receive rings")
    parser.add_argument("--vale-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a vale0 setting for every vale turn (e.g. cpus=1)")
    args = parser.parse_args()
    if args.bare_v3 and args.no_bare:
        parser.error("--bare-v3 needs the bare switch: drop --no-bare")
    if os.geteuid() != 0:
        print("e2e: needs root (network namespaces, veth pairs, packet sockets)",
              file=sys.stderr)
        return 1
    remove_leftovers()
    lab = Lab(Path(tempfile.mkdtemp(prefix=f"{PREFIX}-")))
    try:
        with signals_as_interrupt():
            lines = run(args, lab)
    except KeyboardInterrupt as exc:
        print(f"e2e: interrupted ({exc or 'SIGINT'}); everything made is removed",
              file=sys.stderr)
        return 130
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
