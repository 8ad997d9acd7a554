"""The end-to-end benchmark: vale against the Linux bridge, Open vSwitch and bare packet-socket
switches, between real hosts.

    .venv/bin/python bench/e2e.py [--json] [--runs 5] [--quick] [--plot FILE.svg|.png]
                                  [--no-ovs] [--no-core] [--no-tap] [--no-bare] [--bare-v3]
                                  [--no-slow] [--kernel-bare]
                                  [--pps-frames udp,raw] [--vale-set KEY=VALUE ...]

Two hosts, each a network namespace with a veth pair whose other end sits in a switch
namespace of this run's own; the switch under test joins those two ends. The switch
namespace stands where the root namespace would: the veth ends behave the same, and
whatever a switch makes there (Open vSwitch's netdev datapath creates `ovs-netdev` and a TAP
per bridge) lives and dies with it, so the root namespace is never touched. The switches:

  vale         valed (its own socket and state in a temporary directory), both ends
               attached, default settings (the kernel fast path on). Its forwarding
               thread's CPU (`thread_cpu` in valed's `info` of vale0, read after wiring;
               the last CPU when valed names none, as for an unpinned thread) is where the
               pinned bare switches run
  vale-core    the same valed with vale0 given a core of its own: the thread pinned to the
               last CPU and busy-polling (cpus=N-1, busy_poll_us=1000000), so no frame waits
               for it to be woken; leave it out with --no-core
  vale-slow    the same valed with the kernel fast path off (fastpath=off): every frame
               through vale's packet sockets; leave it out with --no-slow
  vale-tap     vale, but each host's interface is a TAP that valed makes and holds
               (`valectl create vb<pid>tNN --tap --netns ... --address ...`), in a pair of
               host namespaces of its own with the same addresses; removed after the turn,
               so its MACs are new each turn. Leave it out with --no-tap. There is no
               bridge-tap: a TAP on the Linux bridge needs a process holding its fd (a VM),
               and that process would be the thing measured
  bare         bench/afpacket_bare.c (built with gcc into the run's directory): a bare
               AF_PACKET switch between two ports, with vale's packet sockets and receive
               rings and nothing else (no learning, no lookup, no counters, no TX ring); it
               sleeps in epoll when a round finds nothing, and runs where the scheduler
               puts it
  bare-pinned  the same, pinned to vale's forwarding-thread CPU (-c)
  bare-mmsg    no receive ring: recvmmsg/sendmmsg on plain packet sockets (-m), pinned so too
  bare-v3      with --bare-v3: `bare` with TPACKET_V3 rings (1 ms block timeout), which wake
               the reader per block, not per frame. --no-bare leaves out every bare switch
  bridge       a Linux bridge, STP off, as a namespace has it: bridge-nf-call-iptables on
               (br_netfilter's hooks, as in the root namespace here)
  bridge-nonf  the same with bridge-nf-call-iptables and -ip6tables off in the switch
               namespace for its turn: the bridge at its fastest
  kbare        with --kernel-bare: the fast path's tc program alone between the two ports
               (bench/kernel_bare.py: maps filled by hand, no vale); kbare-tap the same
               with a packet socket on each port that keeps nothing (classic BPF): what
               a socket on the port costs, which vale's upcall devices save
  ovs          Open vSwitch's userspace datapath (datapath_type=netdev) with
               other_config:userspace-tso-enable=true; its own ovsdb-server and
               ovs-vswitchd, private run/db/log directories; --no-ovs leaves it out
  ovs-notso    the same without userspace TSO (the hosts' tx checksum offload off for it)

Each run gives every switch one turn, re-wiring the same hosts; every other run takes the
switches in reverse, and the order is rotated by the run's index (run r starts at the
(r mod n)-th switch of its list), and logged: no switch always goes first or last, or
always follows the same one. Per
switch and run:

  rtt_ms             ping -c 200 -i 0.005, average
  tcp_gbps           iperf3, one TCP stream, default offloads, -t 5, received
  tcp_busy_cpus      CPUs busy (/proc/stat, the whole machine) from iperf3's start to its
                     end; tcp_gbps_per_cpu is tcp_gbps over it: the cost per bit
  pps_udp_delivered  60-byte frames (64 with FCS), known unicast to B, from trafgen at full
                     rate on A (TX ring, qdisc bypass, one process), counted at B's interface
                     (rx_packets) over the send window; pps_udp_sent is what A's interface
                     sent. UDP to a closed port: B routes each one and tries (rate-limited)
                     to answer it with an ICMP port unreachable
  pps_udp_busy_cpus  CPUs busy over that window (as tcp_busy_cpus); pps_udp_per_cpu is
                     pps_udp_delivered over it: frames delivered per busy CPU-second
  pps_raw_*          the same with raw Ethernet frames (ethertype 0x88b5), which B drops at
                     once: the switching path alone. --pps-frames udp,raw (the default)
                     chooses which of the two run
  rss_mib_2          resident memory (VmRSS) of valed / ovs-vswitchd with the two ports
  background_cpus    CPUs busy over 0.5 s just before the turn, while this run is idle

and once, at the end: valed's CPU use while idle with the two hosts attached, over 10 s
after pings between them (idle_cpu_percent, user and system time of all its threads), and
its resident memory with 32 hosts attached (rss_mib_32). With
vale, the switch's counters over each frame window are reported (vale_pps_counters), and
`valectl stats` after each vale turn goes to stderr with the progress.

`limit` is the transport's limit: per run and per measure, the best of the bare switches of
that run (highest, or lowest for the round trip), with which one it was. Medians are over
the runs whose turn completed; ratios are given both as the ratio of the medians and paired:
the median of the per-run ratios over the runs where both sides completed. A turn that fails
(wiring or a measure) is logged (`e2e: run 3: turn 'bare' FAILED: ...`) and listed
(failed_turns in the summary, and in the table) with the pairings it breaks; nothing is
dropped silently. A peer or tool that is not there (ovs-vswitchd, iperf3, trafgen, gcc) leaves
out that switch or measure, saying so; the rest runs.

The targets in the closing summary, judged on paired ratios (for vale and vale-core):
  fp_tcp       (vale only: the kernel fast path) tcp_gbps >= 1.0 x the bridge
  fp_pps_*     frames delivered >= 1.15 x bridge-nonf
  fp_rtt       rtt_ms <= 1.2 x the bridge
  tcp          tcp_gbps >= 0.95 x limit (the ratio to the bridge beside it)
  rtt          rtt_ms <= 1.5 x bare-pinned
  pps_udp/raw  frames delivered >= 1.3 x the bridge
  pps_*_cpu    frames per busy CPU-second >= 1.0 x bare-pinned
  tap_*        vale-tap's tcp_gbps and frames delivered >= 0.95 x vale
  idle_cpu     an idle valed with two ports < 1% of a CPU
  rss_32_ports valed's VmRSS with 32 ports < 1 GiB
They are goals, not tests: the exit code is 0 unless something crashed (130 on Ctrl-C).

--plot FILE draws the run (needs matplotlib: pip install '.[bench]'): a panel per measure, a
bar per switch at its median with the runs' range, the targets as lines (goal x the peer's
median). --json prints one JSON object per line (the table otherwise).

Everything this run makes is named vb<pid>...: namespaces vb<pid>sw, vb<pid>hNN, ports
vb<pid>pNN and TAPs vb<pid>tNN, bridges vb<pid>br / vb<pid>ovs, and /tmp/vb<pid>-*; it is all
removed at the end, also on failure, Ctrl-C, SIGTERM or SIGHUP (the runs completed so far are
still reported), and leftovers of earlier runs whose process is gone are removed at the
start. Addresses come from 198.18.0.0/15 only. Needs root.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shlex
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

from vale._fastpath import DROP_REASONS  # noqa: E402  (this tree's vale)
from vale.client import ClientError, call  # noqa: E402
from vale.demo import iperf3_gbps  # noqa: E402

PREFIX = f"vb{os.getpid()}"         # + hNN / pNN / tNN / sw / br / ovs: at most 15 bytes
_OURS_NS = re.compile(r"^vb(\d+)(sw|h\d{2})$")
_OURS_TMP = re.compile(r"^vb(\d+)-")
SWITCH_NS = f"{PREFIX}sw"
TAP_HOSTS = 40                      # vale-tap's hosts: namespaces vb<pid>h41, h42
OVS_SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
UDP_PORT = 9                        # discard: nobody listens
RAW_ETHERTYPE = 0x88B5              # IEEE local experimental: no handler at B
FRAMES = ("udp", "raw")             # the kinds of 60-byte frame: see trafgen_config

METRICS = {                         # name: (unit, which is better; "": neither)
    "tcp_gbps": ("Gbit/s", "higher"),
    "tcp_busy_cpus": ("CPUs", ""),
    "tcp_gbps_per_cpu": ("Gbit/s per busy CPU", "higher"),
    **{name: unit for kind in FRAMES for name, unit in (
        (f"pps_{kind}_delivered", ("frames/s", "higher")),
        (f"pps_{kind}_sent", ("frames/s", "higher")),
        (f"pps_{kind}_busy_cpus", ("CPUs", "")),
        (f"pps_{kind}_per_cpu", ("frames per busy CPU-s", "higher")))},
    "rtt_ms": ("ms", "lower"),
    "rss_mib_2": ("MiB", "lower"),
    "background_cpus": ("CPUs", ""),
}
ONCE = {                            # measured once, at the end, for vale: name: unit
    "idle_cpu_percent": "% of a CPU",
    "rss_mib_32": "MiB",
}
NEITHER = {                         # what the metrics with no better side say
    "tcp_busy_cpus": "busy from iperf3's start to its end, all users",
    **{f"pps_{kind}_busy_cpus": "busy over the send window, all users" for kind in FRAMES},
    "background_cpus": "busy before the turn: not this run",
}
STEPS = {                           # a turn's measures, in order: the metrics each gives
    "rtt": ("rtt_ms",),
    "tcp": ("tcp_gbps", "tcp_busy_cpus", "tcp_gbps_per_cpu"),
    **{f"pps_{kind}": (f"pps_{kind}_delivered", f"pps_{kind}_sent", f"pps_{kind}_busy_cpus",
                       f"pps_{kind}_per_cpu") for kind in FRAMES},
    "rss": ("rss_mib_2",),
}
RATIOS = [m for m, (_, better) in METRICS.items()     # compared between switches (what a
          if better and not m.endswith("_sent")]      # port accepted is not: it follows)
VALES = ("vale", "vale-core", "vale-slow", "vale-tap")  # the vale configurations compared
BARES = ("bare", "bare-pinned", "bare-mmsg", "bare-v3")
PEERS = ("bridge", "bridge-nonf", "ovs", "ovs-notso", "limit", "bare-pinned")  # ratios to
LIMIT = "limit"                     # per run and measure, the best bare switch
BARE_SOURCE = BENCH / "afpacket_bare.c"


def core_settings() -> dict[str, str]:
    """vale-core: the forwarding thread on the last CPU (trafgen sends from CPU 0) and
    busy-polling for up to a second after each frame, so that it is never woken: the way
    a switch with a core of its own runs (vale-ctl -p, OVS-DPDK's PMD threads)."""
    return {"cpus": str((os.cpu_count() or 1) - 1), "busy_poll_us": "1000000"}


@dataclass(frozen=True)
class Target:
    """A goal: SWITCH's METRIC against PEER's in the same run, paired (ratio GOAL at least,
    or at most where lower is better), or, with no peer, an absolute figure below GOAL."""
    key: str
    switch: str
    metric: str
    peer: str | None
    goal: float
    beside: tuple[str, ...] = ()    # peers whose paired ratios are shown beside it


def targets() -> list[Target]:
    """The targets, judged for vale and vale-core; the TAP ones for vale-tap against vale."""
    found = []
    for mine in ("vale", "vale-core"):
        found += [Target("tcp", mine, "tcp_gbps", LIMIT, 0.95, beside=("bridge",)),
                  Target("rtt", mine, "rtt_ms", "bare-pinned", 1.5)]
        for kind in FRAMES:
            found += [Target(f"pps_{kind}", mine, f"pps_{kind}_delivered", "bridge", 1.3),
                      Target(f"pps_{kind}_cpu", mine, f"pps_{kind}_per_cpu", "bare-pinned",
                             1.0)]
    found += [Target("fp_tcp", "vale", "tcp_gbps", "bridge", 1.0, beside=("bridge-nonf",)),
              Target("fp_rtt", "vale", "rtt_ms", "bridge", 1.2)]
    found += [Target(f"fp_pps_{kind}", "vale", f"pps_{kind}_delivered", "bridge-nonf", 1.15,
                     beside=("bridge",)) for kind in FRAMES]
    found += [Target("tap_tcp", "vale-tap", "tcp_gbps", "vale", 0.95)]
    found += [Target(f"tap_pps_{kind}", "vale-tap", f"pps_{kind}_delivered", "vale", 0.95)
              for kind in FRAMES]
    found += [Target("idle_cpu", "vale", "idle_cpu_percent", None, 1.0),
              Target("rss_32_ports", "vale", "rss_mib_32", None, 1024.0)]
    return found


@dataclass(frozen=True)
class Plan:
    tcp_s: int
    pps_s: float
    pings: int
    frames: tuple[str, ...] = FRAMES
    tcp: bool = True                    # False: iperf3 is not installed


FULL = Plan(tcp_s=5, pps_s=3.0, pings=200)
QUICK = Plan(tcp_s=2, pps_s=1.0, pings=50)


def log(message: str) -> None:
    print(f"e2e: {message}", file=sys.stderr, flush=True)


def failure(exc: BaseException) -> str:
    """An exception as a line: the expected kinds by their message, others with their type."""
    if isinstance(exc, (RuntimeError, ClientError)):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:400]
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


def cpu_seconds(pid: int) -> float:
    """User and system time of all of a process's threads so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
              cwd: Path = ROOT, stdin: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        """A daemon in the foreground, in a session of its own (a Ctrl-C reaches only us,
        and we stop it), its output in tmp/NAME.log; run in cwd (a Python module from
        there comes first); stdin=subprocess.PIPE to talk to it."""
        with (self.tmp / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(cmd, stdin=stdin, stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=cwd,
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
    """SIGINT (also where it was ignored at start, as for a command started in the
    background), SIGTERM and SIGHUP end the run as Ctrl-C does; the teardown and the report
    that follow are not interrupted by a second one."""
    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
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
    port: str                               # the switch's port: a veth end in SWITCH_NS or a TAP
    ip: str
    mac: str                                # its interface's; a TAP's is known once it is made
    dev: str = "eth0"                       # its interface, in its namespace

    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            ) -> subprocess.CompletedProcess[str]:
        return sh(*in_ns(self.ns, *cmd), check=check, timeout=timeout)

    def popen(self, *cmd: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(in_ns(self.ns, *cmd), text=True, **kw)

    def stat(self, name: str) -> int:
        return int(self.run("cat", f"/sys/class/net/{self.dev}/statistics/{name}").stdout)


def make_ns(lab: Lab, ns: str) -> None:
    """A namespace of this run's: no IPv6 (no neighbour discovery noise), lo up."""
    sh("ip", "netns", "add", ns)
    lab.namespaces.append(ns)
    for key in ("all", "default"):
        sh(*in_ns(ns, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"))
    sh("ip", "-n", ns, "link", "set", "lo", "up")


def make_switch_ns(lab: Lab) -> None:
    """The namespace holding the switch-side veth ends (and the bridges)."""
    make_ns(lab, SWITCH_NS)


def make_host(lab: Lab, i: int) -> Host:
    """Host i: namespace vb<pid>hNN, eth0 at 198.18.0.i/16, its peer vb<pid>pNN in the switch
    namespace, up and attached to nothing."""
    ns, port = f"{PREFIX}h{i:02d}", f"{PREFIX}p{i:02d}"
    make_ns(lab, ns)
    sh("ip", "-n", SWITCH_NS, "link", "add", port, "type", "veth", "peer", "name", "eth0",
       "netns", ns)
    sh("ip", "-n", SWITCH_NS, "link", "set", port, "up")
    ip = f"198.18.0.{i}"
    sh("ip", "-n", ns, "addr", "add", f"{ip}/16", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    mac = sh(*in_ns(ns, "cat", "/sys/class/net/eth0/address")).stdout.strip()
    return Host(ns, port, ip, mac)


def make_tap_host(lab: Lab, i: int) -> Host:
    """vale-tap's host i: an empty namespace vb<pid>h(40+i) with host i's address to be; its
    interface, the TAP vb<pid>tNN, is made (and its MAC known) when vale-tap wires it."""
    ns, tap = f"{PREFIX}h{TAP_HOSTS + i:02d}", f"{PREFIX}t{i:02d}"
    make_ns(lab, ns)
    return Host(ns, tap, f"198.18.0.{i}", mac="", dev=tap)


def remove_host(lab: Lab, host: Host) -> None:
    sh("ip", "netns", "del", host.ns, check=False)      # takes the veth pair with it
    if host.ns in lab.namespaces:
        lab.namespaces.remove(host.ns)


# -- the switches -------------------------------------------------------------------------

class Switch:
    """A switch under test: wire() joins the hosts' ports and returns the two hosts to
    measure between (the ones given, but for vale-tap); unwire() lets them go."""
    name = ""

    def wire(self, hosts: list[Host]) -> list[Host]:
        raise NotImplementedError

    def unwire(self) -> None:
        raise NotImplementedError

    def pid(self) -> int | None:
        """The process doing the switching, if there is one."""
        return None


class Valed:
    """One valed for the whole run (its own socket and state in the run's directory); from
    another tree (a build of another version, for an A/B of two versions) when given."""

    def __init__(self, lab: Lab, tree: Path = ROOT, name: str = "valed",
                 extra: tuple[str, ...] = (), ns: str = SWITCH_NS,
                 metrics: str | None = None) -> None:
        """metrics: HOST:PORT to serve them at, in namespace ns (None: none)."""
        self.lab = lab
        self.sock = str(lab.tmp / f"{name}.sock")
        serve = ("--metrics", metrics) if metrics else ("--no-metrics",)
        self.proc = lab.start(name, in_ns(
            ns, sys.executable, "-m", "vale.daemon", "--foreground", "--socket",
            self.sock, "--state-dir", str(lab.tmp / f"{name}-state"), *serve, *extra),
            cwd=tree)
        deadline = time.monotonic() + 15
        while True:
            try:
                self.call("version")
                return
            except ClientError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("valed did not start: "
                                       + (lab.tmp / f"{name}.log").read_text()[-800:]) from None
                time.sleep(0.05)

    def call(self, op: str, **args: Any) -> Any:
        return call(op, args, path=self.sock)


@dataclass
class ThreadCpu:
    """The CPU of vale's forwarding thread, where the pinned bare switches run: from the
    first `vale` turn (valed's `info` of vale0, `thread_cpu`), or the last CPU when valed
    names none. Decided once, so that every pinned turn of the run uses the same CPU."""
    cpu: int | None = None
    source: str = ""

    def seen(self, info: Any) -> None:
        """What a `vale` turn's info said (or the ClientError it raised)."""
        value = info.get("thread_cpu") if isinstance(info, dict) else None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(info, Exception):
                why = f"valed's info of vale0 failed ({info})"
            elif not isinstance(info, dict) or "thread_cpu" not in info:
                why = "valed's info of vale0 has no thread_cpu"
            else:
                why = f"valed's info of vale0 says thread_cpu {value!r} (not pinned)"
            if self.cpu is None:
                self.fallback(why)
            return
        if self.cpu is None:
            self.cpu, self.source = value, "valed's info of vale0 (thread_cpu)"
            log(f"vale's forwarding thread is on CPU {value}: the pinned bare switches run there")
        elif value != self.cpu:
            log(f"vale's forwarding thread is on CPU {value} now, not {self.cpu} as before; "
                f"the pinned bare switches stay on CPU {self.cpu}")

    def fallback(self, why: str) -> None:
        self.cpu = (os.cpu_count() or 1) - 1
        self.source = f"the last CPU: {why}"
        log(f"{why}: the pinned bare switches run on the last CPU, {self.cpu}")

    def get(self) -> int:
        if self.cpu is None:
            self.fallback("no vale turn has told vale's thread CPU yet")
        assert self.cpu is not None
        return self.cpu


class Vale(Switch):
    """vale0 in valed with the given settings: a switch is made by its first attach and goes
    with its last port, so each turn starts from the defaults plus these settings."""

    def __init__(self, daemon: Valed, name: str, settings: dict[str, str],
                 thread_cpu: ThreadCpu | None = None) -> None:
        self.daemon = daemon
        self.name = name
        self.settings = settings
        self.thread_cpu = thread_cpu        # the `vale` turn tells it
        self.ports: list[str] = []

    def call(self, op: str, **args: Any) -> Any:
        return self.daemon.call(op, **args)

    def wire(self, hosts: list[Host]) -> list[Host]:
        for host in hosts:
            self.call("attach", port=f"vale0:{host.port}")
            self.ports.append(host.port)
        self.configure()
        return hosts

    def configure(self) -> None:
        if self.settings:
            self.call("set", target="vale0", settings=self.settings)
        if self.thread_cpu is not None:
            try:                            # the switch's info: `valectl info vale0`
                info = self.call("info", port="vale0")
            except ClientError as exc:
                info = exc
            self.thread_cpu.seen(info)

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


class ValeTap(Vale):
    """vale-tap: the hosts' interfaces are TAPs valed makes and holds (the `create`
    operation, kind tap, into each TAP host's namespace with host i's address), attached to
    vale0; `remove` deletes them. The TAP hosts' namespaces are their own, so the veth hosts
    keep their addresses; a TAP made anew has a new MAC and an empty neighbour table, and the
    hosts returned carry the MACs it got (trafgen's destination)."""

    def __init__(self, daemon: Valed, settings: dict[str, str], hosts: list[Host]) -> None:
        super().__init__(daemon, "vale-tap", settings)
        self.hosts = hosts

    def wire(self, hosts: list[Host]) -> list[Host]:
        wired = []
        for host in self.hosts:
            self.call("create", name=host.port, kind="tap", switch="vale0", netns=host.ns,
                      address=f"{host.ip}/16")
            self.ports.append(host.port)
            mac = host.run("cat", f"/sys/class/net/{host.dev}/address").stdout.strip()
            wired.append(dataclasses.replace(host, mac=mac))
        self.configure()
        return wired

    def unwire(self) -> None:
        while self.ports:
            self.call("remove", name=self.ports.pop())


class Bridge(Switch):
    """The Linux bridge; netfilter: br_netfilter's hooks on (bridge-nf-call-iptables and
    -ip6tables, a namespace's default) or off for the turn."""

    def __init__(self, netfilter: bool = True) -> None:
        self.bridge = f"{PREFIX}br"
        self.name = "bridge" if netfilter else "bridge-nonf"
        self.netfilter = netfilter

    def _netfilter(self, on: bool) -> None:
        for table in ("iptables", "ip6tables"):
            sh("ip", "netns", "exec", SWITCH_NS, "sysctl", "-qw",
               f"net.bridge.bridge-nf-call-{table}={int(on)}", check=False)

    def wire(self, hosts: list[Host]) -> list[Host]:
        self._netfilter(self.netfilter)
        sh("ip", "-n", SWITCH_NS, "link", "add", self.bridge, "type", "bridge", "stp_state", "0")
        for host in hosts:
            sh("ip", "-n", SWITCH_NS, "link", "set", host.port, "master", self.bridge)
        sh("ip", "-n", SWITCH_NS, "link", "set", self.bridge, "up")
        return hosts

    def unwire(self) -> None:
        sh("ip", "-n", SWITCH_NS, "link", "del", self.bridge, check=False)
        self._netfilter(True)


class Bare(Switch):
    """bench/afpacket_bare.c between the two hosts' ports, with OPTIONS (-3: TPACKET_V3
    rings, -m: recvmmsg/sendmmsg) and, given PIN, pinned to vale's thread CPU (-c)."""

    def __init__(self, lab: Lab, program: Path, name: str, options: tuple[str, ...] = (),
                 pin: ThreadCpu | None = None) -> None:
        self.lab = lab
        self.program = program
        self.name = name
        self.options = list(options)
        self.pin = pin

    def wire(self, hosts: list[Host]) -> list[Host]:
        a, b = hosts
        pinned = ["-c", str(self.pin.get())] if self.pin is not None else []
        start_switch(self.lab, self.name, in_ns(SWITCH_NS, str(self.program), *self.options,
                                                *pinned, a.port, b.port), "afpacket_bare")
        return hosts

    def unwire(self) -> None:
        self.lab.stop(self.name)


def start_switch(lab: Lab, name: str, cmd: list[str], program: str) -> None:
    """Start a switch process of the run, and wait for it to print "PROGRAM: ready" (its
    log holds earlier runs' lines too); RuntimeError with its last words if it does not."""
    log_file = lab.tmp / f"{name}.log"
    seen = log_file.stat().st_size if log_file.exists() else 0
    proc = lab.start(name, cmd)
    deadline = time.monotonic() + 10
    while f"{program}: ready".encode() not in log_file.read_bytes()[seen:]:
        if proc.poll() is not None or time.monotonic() > deadline:
            lab.stop(name)
            raise RuntimeError(f"{program} did not start: "
                               + log_file.read_bytes()[seen:].decode(errors="replace")[-400:])
        time.sleep(0.02)


class KernelBare(Switch):
    """bench/kernel_bare.py: the fast path's tc program alone between the two ports, its
    maps filled by hand; tap: with a packet socket and the socket filter on each port, as
    vale's."""

    def __init__(self, lab: Lab, tap: bool) -> None:
        self.lab = lab
        self.tap = tap
        self.name = "kbare-tap" if tap else "kbare"

    def wire(self, hosts: list[Host]) -> list[Host]:
        a, b = hosts
        start_switch(self.lab, self.name, in_ns(
            SWITCH_NS, sys.executable, str(BENCH / "kernel_bare.py"),
            *(["--tap"] if self.tap else []), a.port, a.mac, b.port, b.mac), "kernel_bare")
        return hosts

    def unwire(self) -> None:
        self.lab.stop(self.name)


def build_bare(lab: Lab, v3: bool, pin: ThreadCpu) -> tuple[list[Switch], str]:
    """The bare switches, compiled for this run, or none and why."""
    if shutil.which("gcc") is None:
        return [], "not built: gcc is not installed"
    program = lab.tmp / "afpacket_bare"
    try:
        sh("gcc", "-O2", "-Wall", "-o", str(program), str(BARE_SOURCE), timeout=120)
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return [], f"not built: {failure(exc)}"
    bare: list[Switch] = [Bare(lab, program, "bare"),
                          Bare(lab, program, "bare-pinned", pin=pin),
                          Bare(lab, program, "bare-mmsg", ("-m",), pin=pin)]
    if v3:
        bare.append(Bare(lab, program, "bare-v3", ("-3",)))
    return bare, "built with gcc -O2"
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

    def wire(self, hosts: list[Host]) -> list[Host]:
        if not self.tso:
            for host in hosts:
                self.hosts.append(host)
                host.run("ethtool", "-K", host.dev, "tx", "off")
        self.start_vswitchd()
        for host in hosts:
            self.db.vsctl("add-port", self.bridge, host.port)
        return hosts

    def unwire(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.db.vsctl("--if-exists", "del-br", self.bridge)
        self.db.lab.stop("vswitchd")
        self.proc = None
        while self.hosts:
            host = self.hosts.pop()
            host.run("ethtool", "-K", host.dev, "tx", "on")

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
        return [], f"could not be started: {failure(exc)}"
    if shutil.which("ethtool") is None:
        log("ovs-notso left out: ethtool is not installed (it turns the hosts' tx offload off)")
        return [Ovs(db, tso=True)], "ok, without ovs-notso (no ethtool)"
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
                during: Callable[[], None] | None = None) -> tuple[float, float, float]:
    """trafgen on A at full rate: frames per second sent by A's interface and received by
    B's, over SECONDS after a 0.5 s start, and the CPUs busy over that window. `during` is
    called at both ends of the window."""
    conf = lab.tmp / f"{kind}60.trafgen"
    conf.write_text(trafgen_config(a, b, kind))
    wait_reachable(a, b)                # B's MAC known: the frames are known unicast
    with (lab.tmp / "trafgen.log").open("w") as out:
        gen = a.popen("trafgen", "--dev", a.dev, "--conf", str(conf), "--cpus", "1",
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
        cpu0 = cpu_times()
        time.sleep(seconds)
        busy = busy_since(cpu0)
        sent1, got1, t1 = a.stat("tx_packets"), b.stat("rx_packets"), time.monotonic()
        if during:
            during()
    finally:
        stop_group(gen)
    return (sent1 - sent0) / (t1 - t0), (got1 - got0) / (t1 - t0), busy


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


# -- a turn -------------------------------------------------------------------------------

@dataclass
class Turn:
    """What one switch gave in one run; a failure is (step, reason), the step "wire" for
    the whole turn."""
    measured: dict[str, float] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    counters: dict[str, dict[str, Any]] = field(default_factory=dict)  # vale's, per frame kind


def measure_turn(lab: Lab, switch: Switch, hosts: list[Host], plan: Plan, run: int) -> Turn:
    """Wire the switch, measure everything on it, unwire it. A measure that fails is logged
    and noted, and the others go on; when the wiring fails, the whole turn has."""
    turn = Turn()

    def failed(step: str, exc: BaseException) -> None:
        reason = failure(exc)
        where = "" if step == "wire" else f"{step}: "
        log(f"run {run}: turn {switch.name!r} FAILED: {where}{reason}")
        turn.failures.append((step, reason))

    background = busy_cpus()                # before this switch's own threads
    try:
        try:
            a, b = switch.wire(hosts)
            wait_reachable(a, b)
        except Exception as exc:            # any failure fails the turn, loudly
            failed("wire", exc)
            return turn
        turn.measured["background_cpus"] = background
        snapshots: list[dict[str, Any]] = []
        during = (lambda: snapshots.append(switch.stats())) if isinstance(switch, Vale) \
            else None

        def pps(kind: str) -> None:
            snapshots.clear()
            sent, delivered, busy = measure_pps(lab, a, b, plan.pps_s, kind, during)
            turn.measured.update({f"pps_{kind}_sent": sent, f"pps_{kind}_delivered": delivered,
                                  f"pps_{kind}_busy_cpus": busy,
                                  f"pps_{kind}_per_cpu": delivered / max(busy, 0.01)})
            if len(snapshots) == 2:
                turn.counters[kind] = counter_delta(*snapshots)

        def tcp() -> None:
            before = cpu_times()
            gbps = measure_tcp(a, b, plan.tcp_s)
            cpus = busy_since(before)
            turn.measured.update(tcp_gbps=gbps, tcp_busy_cpus=cpus,
                                 tcp_gbps_per_cpu=gbps / max(cpus, 0.01))

        steps: dict[str, Callable[[], None]] = {
            "rtt": lambda: turn.measured.update(rtt_ms=measure_rtt(a, b, plan.pings))}
        if plan.tcp:
            steps["tcp"] = tcp
        for kind in plan.frames:
            steps[f"pps_{kind}"] = lambda kind=kind: pps(kind)
        for name, step in steps.items():
            try:
                step()
            except Exception as exc:        # this measure is lost, the others go on
                failed(name, exc)
        try:
            pid = switch.pid()
            if pid is not None:
                turn.measured["rss_mib_2"] = rss_mib(pid)
            if isinstance(switch, Vale):    # since the attach: ping, iperf3, trafgen
                log("  valectl stats after the turn:\n" + switch.valectl("stats").rstrip())
        except Exception as exc:            # the daemon went away: the turn's other figures stay
            failed("rss", exc)
    finally:                                # also on a failure or Ctrl-C
        try:
            switch.unwire()
        except Exception as exc:
            failed("unwire", exc)
    return turn


def measure_idle_cpu(vale: Vale, hosts: list[Host], seconds: float = 10) -> float:
    """valed's CPU use, percent of one CPU, over SECONDS with the two hosts attached and
    idle, after pings between them (the forwarding thread spins only after traffic)."""
    try:
        vale.wire(hosts)
        wait_reachable(*hosts)
        time.sleep(1.5)                 # the last spin and epoll's one-second wait are over
        pid = vale.daemon.proc.pid
        before, start = cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        return 100 * (cpu_seconds(pid) - before) / (time.monotonic() - start)
    finally:
        vale.unwire()


def measure_rss_32(lab: Lab, vale: Vale, hosts: list[Host]) -> float:
    """valed's VmRSS with 32 hosts attached, after pings between a few pairs."""
    extra: list[Host] = []
    try:
        for i in range(len(hosts) + 1, 33):
            extra.append(make_host(lab, i))
        every = hosts + extra
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


# -- the results --------------------------------------------------------------------------

@dataclass
class Results:
    """What the completed runs gave: per switch, metric and run (1, 2, ...) the value; the
    failed turns; each run's order; and what was left out, and why."""
    switches: list[str] = field(default_factory=list)       # the unrotated order
    values: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    counters: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[int, list[str]] = field(default_factory=dict)
    limit_from: dict[str, dict[int, str]] = field(default_factory=dict)
    left_out: dict[str, str] = field(default_factory=dict)
    once: dict[str, float] = field(default_factory=dict)     # ONCE's, measured at the end
    thread_cpu: ThreadCpu = field(default_factory=ThreadCpu)
    generator: str = ""

    @property
    def runs(self) -> list[int]:
        return sorted(self.orders)

    def add_run(self, run: int, order: list[str], turns: dict[str, Turn]) -> None:
        self.orders[run] = order
        for name, turn in turns.items():
            for metric, value in turn.measured.items():
                self.values.setdefault(name, {}).setdefault(metric, {})[run] = round(value, 4)
            for step, reason in turn.failures:
                metrics = ["all"] if step == "wire" else list(STEPS.get(step, ()))
                self.failures.append({"run": run, "switch": name, "step": step,
                                      "reason": reason, "metrics": metrics})
            for kind, delta in turn.counters.items():
                self.counters.append({"metric": "vale_pps_counters", "switch": name,
                                      "run": run, "frames": kind, **delta})

    def series(self, switch: str, metric: str) -> dict[int, float]:
        return self.values.get(switch, {}).get(metric, {})

    def failed(self, run: int, switch: str, metric: str) -> bool:
        """Whether SWITCH's turn in RUN failed where METRIC is measured."""
        if switch == LIMIT:
            return run not in self.series(LIMIT, metric) and any(
                self.failed(run, bare, metric) for bare in BARES)
        return any(f["run"] == run and f["switch"] == switch and
                   (f["metrics"] == ["all"] or metric in f["metrics"])
                   for f in self.failures)

    def compute_limit(self) -> None:
        """The transport's limit: per run and measure, the best of that run's bare switches
        (which one is in limit_from); from those that completed, said so when one failed."""
        bares = [b for b in BARES if b in self.switches]
        if not bares:
            return
        for metric in RATIOS:
            better = METRICS[metric][1]
            for run in self.runs:
                got = {b: self.series(b, metric)[run] for b in bares
                       if run in self.series(b, metric)}
                if not got:
                    continue
                pick = (max if better == "higher" else min)(got, key=lambda b: got[b])
                self.values.setdefault(LIMIT, {}).setdefault(metric, {})[run] = got[pick]
                missing = [b for b in bares if b not in got and self.failed(run, b, metric)]
                self.limit_from.setdefault(metric, {})[run] = pick + (
                    f" ({', '.join(missing)} failed)" if missing else "")

    def ratio(self, mine: str, peer: str, metric: str) -> dict[str, Any] | None:
        """MINE's METRIC against PEER's: the ratio of the medians, and paired (the median of
        the per-run ratios over the runs where both completed), with the runs that could
        not be paired because a turn failed. None when either has no value at all."""
        a, b = self.series(mine, metric), self.series(peer, metric)
        if not a or not b or not statistics.median(b.values()):
            return None
        both = [r for r in self.runs if r in a and r in b and b[r]]
        return {
            "of_medians": statistics.median(a.values()) / statistics.median(b.values()),
            "paired": statistics.median(a[r] / b[r] for r in both) if both else None,
            "runs_paired": len(both),
            "failed_runs": [r for r in self.runs
                            if self.failed(r, mine, metric) or self.failed(r, peer, metric)],
        }


def peers_of(mine: str) -> tuple[str, ...]:
    return (*PEERS, "vale") if mine == "vale-tap" else PEERS


def median_lines(res: Results) -> list[dict[str, Any]]:
    """Per metric and switch: the median over the completed runs, the range, each run's
    value (null where its turn failed), and for the limit which bare switch it was."""
    lines = []
    for metric in METRICS:
        for switch in [*res.switches, LIMIT]:
            runs = res.series(switch, metric)
            if not runs:
                continue
            line = {"metric": metric, "switch": switch, "unit": METRICS[metric][0],
                    "median": statistics.median(runs.values()), "min": min(runs.values()),
                    "max": max(runs.values()), "runs": [runs.get(r) for r in res.runs]}
            if switch == LIMIT:
                line["from"] = [res.limit_from.get(metric, {}).get(r) for r in res.runs]
            lines.append(line)
    for metric, value in res.once.items():
        lines.append({"metric": metric, "switch": "vale", "unit": ONCE[metric],
                      "median": value, "min": value, "max": value, "runs": [value]})
    return lines


def ratio_lines(res: Results) -> list[dict[str, Any]]:
    """Per metric with a better side and per vale or bare switch: its ratios to the peers."""
    lines = []
    for metric in RATIOS:
        for mine in (s for s in res.switches if s in VALES or s in BARES):
            ratios = {peer: r for peer in peers_of(mine) if peer != mine
                      and (r := res.ratio(mine, peer, metric)) is not None}
            if ratios:
                lines.append({"metric": metric, "switch": mine, "to": ratios})
    return lines


def judge(res: Results, target: Target) -> dict[str, Any]:
    """A target's figure (the paired ratio, or the absolute value), its goal, whether met
    (None: not judged, a side missing from this run)."""
    judged: dict[str, Any] = {"target": target.key, "switch": target.switch,
                              "metric": target.metric, "peer": target.peer}
    lower = target.metric in ONCE or METRICS[target.metric][1] == "lower"
    op = "<" if target.peer is None else "<=" if lower else ">="
    judged["goal"] = f"{op} {target.goal:g}" + (f" x {target.peer}" if target.peer
                                               else f" {ONCE[target.metric]}")
    if target.peer is None:
        value = res.once.get(target.metric)
        judged.update(figure=value, met=None if value is None else value < target.goal)
        return judged
    ratio = res.ratio(target.switch, target.peer, target.metric)
    figure = ratio["paired"] if ratio else None
    judged.update(figure=figure,
                  met=None if figure is None else
                  (figure <= target.goal if lower else figure >= target.goal))
    if ratio:
        judged.update(of_medians=ratio["of_medians"], runs_paired=ratio["runs_paired"],
                      failed_runs=ratio["failed_runs"])
    partial = [r for r, pick in res.limit_from.get(target.metric, {}).items() if "failed" in pick]
    if target.peer == LIMIT and partial:    # the best of fewer bare switches than asked
        judged["limit_partial_runs"] = partial
    beside = {peer: r["paired"] for peer in target.beside
              if (r := res.ratio(target.switch, peer, target.metric)) is not None}
    if beside:
        judged["beside"] = beside
    return judged


def summary_line(res: Results, runs: int, interrupted: str | None) -> dict[str, Any]:
    judged = [judge(res, t) for t in targets() if t.switch in res.switches]
    return {
        "summary": judged,
        "all_met": {mine: all(met) if (met := [j["met"] for j in judged if j["switch"] == mine
                                                and j["met"] is not None]) else None
                    for mine in dict.fromkeys(j["switch"] for j in judged)},
        "not_judged": [f"{j['switch']} {j['target']}" for j in judged if j["met"] is None],
        "failed_turns": res.failures,
        "orders": {str(r): order for r, order in res.orders.items()},
        "vale_thread_cpu": res.thread_cpu.cpu, "vale_thread_cpu_from": res.thread_cpu.source,
        "vale_core_settings": core_settings(),
        "runs": runs, "runs_completed": len(res.runs), "interrupted": interrupted,
        "pps_generator": res.generator, "left_out": res.left_out,
        "cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg()[0]}


def report(res: Results, runs: int, interrupted: str | None) -> list[dict[str, Any]]:
    res.compute_limit()
    return [*median_lines(res), *res.counters, *ratio_lines(res),
            summary_line(res, runs, interrupted)]


def print_results(lines: list[dict[str, Any]]) -> None:
    """The medians, the limit, the failed turns, the ratios and vale's counters."""
    summary = lines[-1]
    medians = [x for x in lines if "median" in x]
    switches = list(dict.fromkeys(x["switch"] for x in medians))
    print(f"\n{'median':<22}" + "".join(f"{s:>12}" for s in switches))
    for metric in [*METRICS, *ONCE]:
        row = {x["switch"]: x["median"] for x in medians if x["metric"] == metric}
        if row:
            unit, better = METRICS.get(metric, (ONCE.get(metric, ""), "lower"))
            cells = "".join(f"{row[s]:>12.4g}" if s in row else f"{'-':>12}" for s in switches)
            note = f"{better} is better" if better else NEITHER[metric]
            print(f"{metric:<22}{cells}   {unit}, {note}")
    for x in medians:
        if x["switch"] == LIMIT:
            print(f"limit of {x['metric']:<19} per run: {', '.join(map(str, x['from']))}")
    if summary["failed_turns"]:
        print("\nFAILED turns (their pairings in that run failed too):")
        for f in summary["failed_turns"]:
            what = "all" if f["metrics"] == ["all"] else ", ".join(f["metrics"]) or "none"
            print(f"  run {f['run']} {f['switch']}: {f['step']}: {f['reason']} "
                  f"(measures lost: {what})")
    print("\nratios: of the medians / paired (median of per-run ratios) [runs paired]"
          " (the bare switches' to the bridge and the limit only; all in --json)")
    for x in lines:
        if "to" in x:
            cells = []
            for peer, r in x["to"].items():
                if x["switch"] in BARES and peer not in ("bridge", LIMIT):
                    continue
                paired = "n/a" if r["paired"] is None else f"{r['paired']:.3g}"
                failed = f" failed runs {r['failed_runs']}" if r["failed_runs"] else ""
                cells.append(f"{peer} {r['of_medians']:.3g}/{paired} [{r['runs_paired']}]"
                             f"{failed}")
            print(f"{x['metric']:<22}{x['switch']:<12}{', '.join(cells)}")
    print()
    for x in lines:
        if x.get("metric") == "vale_pps_counters":
            print(f"{x['switch']}, {x['frames']} frames, run {x['run']}: {x['ports']}, "
                  f"{x['batches']} batches, {x['frames_per_batch']} frames per batch, "
                  f"sizes (<=1, <=2, <=4 ... <=1024): {x['batch_hist']}")


def print_table(lines: list[dict[str, Any]]) -> None:
    """The lines as a readable table: orders, medians, failed turns, the limit, ratios,
    vale's counters, targets."""
    summary = lines[-1]
    for run, order in summary["orders"].items():
        print(f"run {run} order: {', '.join(order)}")
    if not summary["orders"]:
        print("no run completed: nothing measured to report")
    else:
        print_results(lines)
    print("\ntargets (paired within runs, medians over runs):")
    for j in summary["summary"]:
        figure = "n/a" if j["figure"] is None else f"{j['figure']:.4g}"
        met = {True: "met", False: "NOT met", None: "not judged"}[j["met"]]
        extra = f" over {j['runs_paired']} runs" if "runs_paired" in j else ""
        if j.get("failed_runs"):
            extra += f" (failed in runs {j['failed_runs']})"
        if j.get("limit_partial_runs"):
            extra += f" (limit partial in runs {j['limit_partial_runs']})"
        beside = "".join(f", {p} {v:.3g}" for p, v in j.get("beside", {}).items()
                         if v is not None)
        print(f"{j['switch']:<10}{j['target']:<14}{j['metric']:<20}{figure:>10}  "
              f"goal {j['goal']:<23}{met:<11}{extra}{beside}")
    print(f"\nvale's thread CPU: {summary['vale_thread_cpu']} "
          f"(from {summary['vale_thread_cpu_from'] or 'no pinned turn'}); "
          f"vale-core: {summary['vale_core_settings']}")
    print(f"pps generator: {summary['pps_generator']}")
    for what, why in summary["left_out"].items():
        print(f"left out: {what}: {why}")
    print(f"runs: {summary['runs_completed']} of {summary['runs']}"
          + (f" (interrupted: {summary['interrupted']})" if summary["interrupted"] else "")
          + f"; cpus: {summary['cpus']}; load average at the end: "
          f"{summary['loadavg_at_end']:.2f}")

# -- the picture --------------------------------------------------------------------------

PANELS = (
    ("tcp_gbps", "TCP, Gbit/s"),
    ("tcp_gbps_per_cpu", "TCP, Gbit/s per busy CPU"),
    ("pps_udp_delivered", "64-byte UDP frames delivered, frames/s"),
    ("pps_raw_delivered", "64-byte raw frames delivered, frames/s"),
    ("pps_udp_per_cpu", "UDP frames per busy CPU-second"),
    ("pps_raw_per_cpu", "raw frames per busy CPU-second"),
    ("rtt_ms", "round trip, ms (lower is better)"),
)


def import_pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only; SystemExit with what to install."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("e2e: --plot needs matplotlib: pip install '.[bench]' "
                         "(.venv/bin/pip install 'matplotlib>=3.6')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 8})
    return plt


def colour(switch: str) -> str:
    if switch.startswith("vale"):
        return {"vale": "#1f77b4", "vale-core": "#4a9bd6", "vale-slow": "#17becf",
                "vale-tap": "#8cc4ec"}[switch]
    if switch.startswith("bare"):
        return "#7f7f7f"
    return {"bridge": "#2ca02c", "bridge-nonf": "#98df8a", "ovs": "#ff7f0e",
            "ovs-notso": "#ffb574"}.get(switch, "#999999")


def plot(lines: list[dict[str, Any]], path: Path, command: str) -> None:
    """A panel per measure: a bar per switch at its median, the runs' range as an error bar,
    and the targets as lines at the goal times the peer's median (judged paired per run)."""
    plt = import_pyplot()
    summary = lines[-1]
    medians = {(x["metric"], x["switch"]): x for x in lines if "median" in x}
    fig, axes = plt.subplots(4, 2, figsize=(11, 14))
    for ax, (metric, title) in zip(axes.flat, PANELS, strict=False):
        bars = [x for (m, s), x in medians.items() if m == metric and s != LIMIT]
        ax.set_title(title)
        if not bars:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
            continue
        xs = range(len(bars))
        spans = [[b["median"] - b["min"] for b in bars], [b["max"] - b["median"] for b in bars]]
        ax.bar(xs, [b["median"] for b in bars], color=[colour(b["switch"]) for b in bars],
               yerr=spans, capsize=3, ecolor="#333333")
        ax.set_xticks(list(xs), [b["switch"] for b in bars], rotation=30, ha="right")
        for j, t in enumerate(t for t in targets() if t.metric == metric
                              and t.switch in ("vale", "vale-tap") and t.peer):
            peer = medians.get((metric, t.peer))
            if peer is None:
                continue
            op = "<=" if METRICS[metric][1] == "lower" else ">="
            ax.axhline(t.goal * peer["median"], color=("#d62728", "#9467bd")[j % 2],
                       linestyle="--", linewidth=1,
                       label=f"{t.switch} goal: {op} {t.goal:g} x {t.peer} median")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=7, framealpha=0.85)
    text = axes.flat[-1]
    text.axis("off")
    rows = ["targets, paired within runs:"]
    for j in summary["summary"]:
        figure = "n/a" if j["figure"] is None else f"{j['figure']:.3g}"
        met = {True: "met", False: "NOT met", None: "not judged"}[j["met"]]
        rows.append(f"{j['switch']} {j['target']}: {figure} (goal {j['goal']}) {met}")
    if summary["failed_turns"]:
        rows.append(f"failed turns: {len(summary['failed_turns'])} (see the JSON)")
    text.text(0, 1, "\n".join(rows), va="top", family="monospace", fontsize=6.5)
    runs = summary["runs_completed"]
    cut = f" (interrupted after {runs})" if summary["interrupted"] else ""
    fig.suptitle(f"vale end to end, {time.strftime('%Y-%m-%d %H:%M')}, {runs} "
                 f"run{'s' if runs != 1 else ''}{cut}\n{command}", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(fig)
    log(f"the picture is in {path}")


# -- the run ------------------------------------------------------------------------------

class SetupError(RuntimeError):
    """What the run needs could not be had: nothing can be measured."""


def run(args: argparse.Namespace, lab: Lab, res: Results) -> None:
    """Set up, then the runs, each committed to RES once all its turns are done."""
    plan = dataclasses.replace(QUICK if args.quick else FULL, frames=args.pps_frames)
    runs = args.runs
    for tool, package in (("ip", "iproute2"), ("ping", "iputils-ping")):
        if shutil.which(tool) is None:
            raise SetupError(f"{tool} ({package}) is not installed")
    if shutil.which("iperf3") is None:
        res.left_out["tcp"] = "iperf3 is not installed"
        plan = dataclasses.replace(plan, tcp=False)
    if shutil.which("trafgen") is None:
        res.left_out["pps"] = "trafgen (netsniff-ng) is not installed"
        plan = dataclasses.replace(plan, frames=())
    for what, why in res.left_out.items():
        log(f"the {what} test is left out: {why}")
    res.generator = (f"trafgen (TX ring, qdisc bypass, 1 process), 60-byte frames: "
                     f"{', '.join(plan.frames) or 'none'}")
    try:
        make_switch_ns(lab)
        hosts = [make_host(lab, 1), make_host(lab, 2)]
        daemon = Valed(lab)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"the hosts or valed did not come up: {failure(exc)}") from exc
    extra = dict(s.split("=", 1) for s in args.vale_set)
    vale = Vale(daemon, "vale", extra, res.thread_cpu)
    switches: list[Switch] = [vale]
    if not args.no_core:
        switches.append(Vale(daemon, "vale-core", {**core_settings(), **extra}))
    if not args.no_slow:
        switches.append(Vale(daemon, "vale-slow", {**extra, "fastpath": "off"}))
    if not args.no_tap:
        try:
            tap_hosts = [make_tap_host(lab, 1), make_tap_host(lab, 2)]
            switches.append(ValeTap(daemon, extra, tap_hosts))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
            res.left_out["vale-tap"] = f"its hosts did not come up: {failure(exc)}"
    else:
        res.left_out["vale-tap"] = "--no-tap"
    bare, bare_status = (build_bare(lab, args.bare_v3, res.thread_cpu) if not args.no_bare
                         else ([], "--no-bare"))
    if not bare:
        res.left_out["bare"] = bare_status
    switches += [*bare, Bridge(), Bridge(netfilter=False)]
    if args.kernel_bare:
        switches += [KernelBare(lab, tap=False), KernelBare(lab, tap=True)]
    ovs, ovs_status = start_ovs(lab) if not args.no_ovs else ([], "--no-ovs")
    if not ovs:
        res.left_out["ovs"] = ovs_status
    elif ovs_status != "ok":
        res.left_out["ovs-notso"] = ovs_status
    switches += ovs
    res.switches = [s.name for s in switches]
    for what in ("vale-tap", "bare", "ovs", "ovs-notso"):
        if what in res.left_out:
            log(f"{what} is left out: {res.left_out[what]}")
    for i in range(runs):
        base = switches[::-1] if i % 2 else switches
        shift = i % len(switches)
        order = base[shift:] + base[:shift]
        log(f"run {i + 1}/{runs}: order {', '.join(s.name for s in order)}")
        turns: dict[str, Turn] = {}
        try:
            for switch in order:
                log(f"run {i + 1}/{runs}: {switch.name}")
                turns[switch.name] = turn = measure_turn(lab, switch, hosts, plan, i + 1)
                log(f"  {json.dumps({k: round(v, 4) for k, v in turn.measured.items()})}")
        except KeyboardInterrupt:
            log(f"run {i + 1} was cut short: its {len(turns)} finished turns are not reported")
            raise
        res.add_run(i + 1, [s.name for s in order], turns)
    for metric, what, measure in (
            ("idle_cpu_percent", "valed idle with two ports",
             lambda: measure_idle_cpu(vale, hosts)),
            ("rss_mib_32", "32 ports on vale", lambda: measure_rss_32(lab, vale, hosts))):
        log(what)
        try:
            res.once[metric] = round(measure(), 2)
        except Exception as exc:            # a failure here costs the one figure
            log(f"{what} FAILED: {failure(exc)}")
            res.left_out[metric] = f"failed: {failure(exc)}"


def frame_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    if not kinds or any(k not in FRAMES for k in kinds):
        raise argparse.ArgumentTypeError(f"a comma-separated list of {', '.join(FRAMES)}")
    return kinds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--runs", type=int, default=None,
                        help="runs (medians over them; default 5, or 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="short measures: a smoke test")
    parser.add_argument("--plot", type=Path, metavar="FILE",
                        help="draw the results into FILE (.svg or .png; needs matplotlib)")
    parser.add_argument("--pps-frames", type=frame_kinds, default=FRAMES, metavar="KINDS",
                        help="the 60-byte frames of the frame test (default udp,raw)")
    parser.add_argument("--no-ovs", action="store_true", help="leave Open vSwitch out")
    parser.add_argument("--kernel-bare", action="store_true",
                        help="add kbare and kbare-tap: the fast path's program alone, without "
                             "and with a packet socket on each port")
    parser.add_argument("--no-slow", action="store_true",
                        help="leave out vale-slow (vale with the kernel fast path off)")
    parser.add_argument("--no-core", action="store_true",
                        help="leave out vale-core (vale with a CPU of its own, busy-polling)")
    parser.add_argument("--no-tap", action="store_true",
                        help="leave out vale-tap (the hosts on TAPs valed holds)")
    parser.add_argument("--no-bare", action="store_true",
                        help="leave out the bare AF_PACKET switches (bench/afpacket_bare.c)")
    parser.add_argument("--bare-v3", action="store_true",
                        help="add the bare switch with TPACKET_V3 receive rings")
    parser.add_argument("--vale-set", action="append", default=[], metavar="KEY=VALUE",
                        help="a vale0 setting for every vale turn (e.g. cpus=1)")
    args = parser.parse_args()
    if args.bare_v3 and args.no_bare:
        parser.error("--bare-v3 needs the bare switch: drop --no-bare")
    if args.runs is None:
        args.runs = 1 if args.quick else 5
    if args.runs < 1:
        parser.error("--runs: at least 1")
    if args.plot is not None:
        if args.plot.suffix not in (".svg", ".png"):
            parser.error("--plot: the file's name ends in .svg or .png")
        import_pyplot()                     # missing: say so now, not after the runs
    if any("=" not in s for s in args.vale_set):
        parser.error("--vale-set takes KEY=VALUE")
    if os.geteuid() != 0:
        print("e2e: needs root (network namespaces, veth pairs, packet sockets)",
              file=sys.stderr)
        return 1
    remove_leftovers()
    lab = Lab(Path(tempfile.mkdtemp(prefix=f"{PREFIX}-")))
    res = Results()
    interrupted: str | None = None
    status = 0
    try:
        with signals_as_interrupt():
            try:
                run(args, lab, res)
            except KeyboardInterrupt as exc:
                interrupted, status = str(exc) or "SIGINT", 130
            except SetupError:
                raise
            except Exception as exc:        # a crash: the runs that completed still count
                interrupted, status = f"failed: {failure(exc)}", 1
    except SetupError as exc:
        print(f"e2e: cannot run: {exc}", file=sys.stderr)
        return 1
    finally:
        lab.teardown()
    if interrupted:
        print(f"e2e: interrupted ({interrupted}); everything made is removed; "
              f"{len(res.runs)} completed run(s) reported", file=sys.stderr)
    lines = report(res, args.runs, interrupted)
    if args.json:
        for line in lines:
            print(json.dumps(line), flush=True)
    else:
        print_table(lines)
    if args.plot is not None and res.runs:
        plot(lines, args.plot, shlex.join(["bench/e2e.py", *sys.argv[1:]]))
    return status


if __name__ == "__main__":
    sys.exit(main())
