"""VM ports: frames circling through a switch between the two virtio ports of one testpmd,
in the layout that measures a switch fairly on two CPUs (../shared/docs/vm-and-app-ports.md,
"Measuring").

    .venv/bin/python bench/vm.py [--runs 3] [--seconds 8] [--sizes 64,1500] [--json]
                                 [--plot FILE] [--switches vale-poll,ovs,...]

One dpdk-testpmd (the load) owns two ports, its forwarding lcore on CPU 0 and its idle
main lcore on CPU 1, `--forward-mode=mac` with each port sending to the other's MAC, and
is primed with 16 bursts of 32 per port (`start tx_first 16`); frames then circle
port 0 -> switch -> port 1 -> testpmd -> port 0, both ways. The figure is the sum of both
ports' receive rates (testpmd's `Rx-pps`, asked for every second), the median over the
seconds after a warm-up: what one switch core forwards. The switches, each given the other CPU:

- `vale-poll`: valed's vale0, busy-polling and pinned (`busy_poll_us=1000000 cpus=1`),
  two `--vhost-user` ports the load's `net_virtio_user` ports attach to;
- `vale`: the same with valed's defaults (it sleeps when idle, its CPU chosen);
- `ovs`, `ovs-flows`: Open vSwitch with DPDK (Debian openvswitch-switch-dpdk, its
  ovs-vswitchd-dpdk run directly, with a database of the run's own), one PMD thread on CPU
  1, two `dpdkvhostuserclient` ports (the load's virtio-user ports listen), with the
  NORMAL action (MAC learning, as vale does) or port-to-port flows;
- `limit`: the rings' limit: a second testpmd with two `net_vhost` back ends, `io`
  forwarding on CPU 1 (the vhost library against the virtio front end, no switching);
- `bridge`: the load's ports are `net_af_packet` on veths in a Linux bridge (STP off), in
  a namespace of the run's own: the kernel path a VM's packet program takes today.

Every run gives each switch a turn per frame size, in an order rotated from run to run;
ratios are the median of the per-run ratios (paired), so the machine's drift cancels.
Needs root, dpdk-testpmd (Debian dpdk-dev) and 2 MiB huge pages, which it reserves (and
gives back: nr_hugepages as it found it). Everything it makes is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import e2e

TESTPMD = shutil.which("dpdk-testpmd") or "dpdk-testpmd"
NR_HUGEPAGES = Path("/proc/sys/vm/nr_hugepages")
PAGES = 512                     # 1 GiB: two testpmds of -m 512 (the limit needs two)
MAC0, MAC1 = "02:00:00:00:00:11", "02:00:00:00:00:12"
WARMUP_S = 3
BURSTS = 16                     # bursts of 32 per port in flight: the loop runs full
SWITCHES = ("vale-poll", "vale", "ovs", "ovs-flows", "limit", "bridge")
COLOURS = {"vale-poll": "#1f77b4", "vale": "#8cc4ec", "ovs": "#ff7f0e", "ovs-flows": "#ffb574",
           "limit": "#7f7f7f", "bridge": "#2ca02c"}
GOALS = {("vale-poll", 64): [("ovs", 1.0), ("ovs-flows", None), ("limit", None),
                             ("bridge", 10.0)],
         ("vale-poll", 1500): [("ovs", 1.0), ("bridge", 10.0)]}   # >= goal x peer; None: shown


def testpmd(lab: e2e.Lab, name: str, lcores: str, vdevs: list[str], fwd: list[str],
            wrap: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """A testpmd; its standard input a pipe, which it waits on (or reads commands from)."""
    return lab.start(name, [*wrap, TESTPMD, "--lcores", lcores, "--no-pci", "-m", "512",
                            "--single-file-segments", "--file-prefix", f"{e2e.PREFIX}{name}",
                            "--huge-dir", str(lab.tmp / "huge"),
                            *(f"--vdev={v}" for v in vdevs), "--", "--nb-cores=1",
                            "--total-num-mbufs=32768", *fwd], stdin=subprocess.PIPE)


def load(lab: e2e.Lab, size: int, ports: list[str], wrap: tuple[str, ...] = (),
         peers: tuple[str, str] = (MAC1, MAC0)) -> subprocess.Popen[bytes]:
    """The testpmd whose rate is measured: two ports, mac forwarding, primed with BURSTS
    bursts per port; interactive, so rate() can ask it for its counters."""
    (lab.tmp / "load.log").unlink(missing_ok=True)      # Lab.start appends: this turn's only
    proc = testpmd(lab, "load", "0@1,1@0", ports,
                   ["-i", "--forward-mode=mac", f"--eth-peer=0,{peers[0]}",
                    f"--eth-peer=1,{peers[1]}", f"--txpkts={size}", "--burst=32"], wrap)
    command(proc, f"start tx_first {BURSTS}")
    return proc


def command(proc: subprocess.Popen[bytes], line: str) -> None:
    """One line to an interactive testpmd (it reads them once at its prompt)."""
    assert proc.stdin is not None
    proc.stdin.write(line.encode() + b"\n")
    proc.stdin.flush()


def stop_load(lab: e2e.Lab) -> None:
    proc = lab.daemons.get("load")
    if proc is not None and proc.poll() is None:
        try:
            command(proc, "quit")
            proc.wait(10)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            pass
    lab.stop("load")


def rate(lab: e2e.Lab, proc: subprocess.Popen[bytes], seconds: float) -> float:
    """Mpps both load ports received, the median second after the warm-up (testpmd's Rx-pps
    is the rate since the last `show port stats`, asked for once a second)."""
    for _ in range(int(WARMUP_S + seconds)):
        time.sleep(1)
        try:
            command(proc, "show port stats all")
        except BrokenPipeError:
            raise RuntimeError("testpmd exited: " + (lab.tmp / "load.log").read_text(
                errors="replace")[-1500:]) from None
    time.sleep(0.5)
    text = (lab.tmp / "load.log").read_text(errors="replace")
    per_port = re.findall(r"Rx-pps:\s+(\d+)", text)
    sums = [int(a) + int(b) for a, b in zip(per_port[0::2], per_port[1::2], strict=False)]
    window = sums[WARMUP_S:] or sums
    if not window:
        raise RuntimeError("testpmd printed no rates: " + text[-600:])
    return statistics.median(window) / 1e6


def vale_turn(lab: e2e.Lab, valed: e2e.Valed, size: int, seconds: float,
              settings: dict[str, str]) -> float:
    socks = [str(lab.tmp / f"vm{k}.sock") for k in (0, 1)]
    for k, sock in enumerate(socks):
        valed.call("create", name=f"vm{k}", kind="vhost_user", switch="vale0", path=sock)
    try:
        valed.call("set", target="vale0", settings=settings)
        proc = load(lab, size, [f"net_virtio_user{k},path={sock},queues=1,queue_size=1024,"
                                f"mac={mac}" for k, (sock, mac)
                                in enumerate(zip(socks, (MAC0, MAC1), strict=True))])
        return rate(lab, proc, seconds)
    finally:
        stop_load(lab)
        for k in (0, 1):
            valed.call("remove", name=f"vm{k}")


def limit_turn(lab: e2e.Lab, size: int, seconds: float) -> float:
    socks = [str(lab.tmp / f"limit{k}.sock") for k in (0, 1)]
    testpmd(lab, "limit", "0@0,1@1", [f"net_vhost{k},iface={s},queues=1"
                                      for k, s in enumerate(socks)], ["--forward-mode=io"])
    try:
        deadline = time.monotonic() + 15
        while not all(Path(s).exists() for s in socks):
            if time.monotonic() > deadline:
                raise RuntimeError("the vhost testpmd made no sockets")
            time.sleep(0.1)
        proc = load(lab, size, [f"net_virtio_user{k},path={s},queues=1,queue_size=1024,mac={mac}"
                                for k, (s, mac) in enumerate(zip(socks, (MAC0, MAC1),
                                                                 strict=True))])
        return rate(lab, proc, seconds)
    finally:
        stop_load(lab)
        lab.stop("limit")


OVS_DPDK = Path("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk")


def ovs_turn(lab: e2e.Lab, size: int, seconds: float, flows: bool) -> float:
    """Open vSwitch with DPDK, one PMD thread on CPU 1, two dpdkvhostuserclient ports (the
    load's virtio-user ports listen); NORMAL (MAC learning) or port-to-port flows."""
    db = e2e.OvsDb(lab)
    db.vsctl("--no-wait", "set", "Open_vSwitch", ".", "other_config:dpdk-init=true",
             "other_config:dpdk-socket-mem=512", "other_config:pmd-cpu-mask=0x2",
             "other_config:dpdk-lcore-mask=0x1",
             f"other_config:dpdk-extra=--no-pci --huge-dir={lab.tmp / 'huge'} "
             f"--file-prefix={e2e.PREFIX}ovs --single-file-segments")
    lab.start("vswitchd", [str(OVS_DPDK), f"unix:{db.sock}", "--no-chdir",
                           f"--unixctl={db.dir / 'vswitchd.ctl'}",
                           f"--log-file={db.dir / 'ovs-vswitchd.log'}"], env=db.env)
    socks = [str(lab.tmp / f"ovs{k}.sock") for k in (0, 1)]
    try:
        db.vsctl("add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev")
        for k, sock in enumerate(socks):
            db.vsctl("add-port", "br0", f"vh{k}", "--", "set", "Interface", f"vh{k}",
                     "type=dpdkvhostuserclient", f"options:vhost-server-path={sock}")
        if flows:
            ofctl = ["ovs-ofctl", "-O", "OpenFlow13"]
            e2e.sh(*ofctl, "del-flows", f"unix:{db.dir / 'br0.mgmt'}", env=db.env)
            for a, b in ((1, 2), (2, 1)):
                e2e.sh(*ofctl, "add-flow", f"unix:{db.dir / 'br0.mgmt'}",
                       f"in_port={a},actions=output:{b}", env=db.env)
        proc = load(lab, size, [f"net_virtio_user{k},path={s},queues=1,queue_size=1024,"
                                f"mac={mac},server=1" for k, (s, mac)
                                in enumerate(zip(socks, (MAC0, MAC1), strict=True))])
        return rate(lab, proc, seconds)
    finally:
        stop_load(lab)
        lab.stop("vswitchd")
        lab.stop("ovsdb")
        shutil.rmtree(db.dir, ignore_errors=True)


def bridge_turn(lab: e2e.Lab, size: int, seconds: float) -> float:
    ns = e2e.SWITCH_NS
    macs = [e2e.sh(*e2e.in_ns(ns, "cat", f"/sys/class/net/{e2e.PREFIX}a{k}/address")).stdout.strip()
            for k in (0, 1)]
    proc = load(lab, size, [f"net_af_packet{k},iface={e2e.PREFIX}a{k},qpairs=1"
                            for k in (0, 1)],
                wrap=("ip", "netns", "exec", ns), peers=(macs[1], macs[0]))
    try:
        return rate(lab, proc, seconds)
    finally:
        stop_load(lab)


def make_bridge(lab: e2e.Lab) -> None:
    """In the switch namespace: a bridge (STP off) with two veth pairs, aN for testpmd."""
    ns = e2e.SWITCH_NS
    e2e.sh("ip", "-n", ns, "link", "add", f"{e2e.PREFIX}br", "type", "bridge", "stp_state", "0")
    for k in (0, 1):
        a, b = f"{e2e.PREFIX}a{k}", f"{e2e.PREFIX}b{k}"
        e2e.sh("ip", "-n", ns, "link", "add", a, "type", "veth", "peer", "name", b)
        e2e.sh("ip", "-n", ns, "link", "set", b, "master", f"{e2e.PREFIX}br")
        for dev in (a, b):
            e2e.sh("ip", "-n", ns, "link", "set", dev, "up")
    e2e.sh("ip", "-n", ns, "link", "set", f"{e2e.PREFIX}br", "up")


def reserve_huge_pages(lab: e2e.Lab) -> int:
    """Pages for the run on a hugetlbfs of its own; returns nr_hugepages as found."""
    before = int(NR_HUGEPAGES.read_text())
    NR_HUGEPAGES.write_text(str(before + PAGES))
    free = int(re.search(r"HugePages_Free:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
    if free < PAGES:
        NR_HUGEPAGES.write_text(str(before))
        raise SystemExit(f"vm: only {free} of {PAGES} 2 MiB huge pages could be reserved")
    (lab.tmp / "huge").mkdir()
    e2e.sh("mount", "-t", "hugetlbfs", "nodev", str(lab.tmp / "huge"))
    return before


def paired(results: dict[tuple[str, int], list[float]], mine: str, peer: str,
           size: int) -> float | None:
    a, b = results.get((mine, size), []), results.get((peer, size), [])
    pairs = [x / y for x, y in zip(a, b, strict=False) if y > 0]
    return statistics.median(pairs) if pairs else None


def plot(results: dict[tuple[str, int], list[float]], sizes: list[int], path: Path,
         command: str, switches: tuple[str, ...] = SWITCHES,
         colours: dict[str, str] = COLOURS) -> None:
    plt = e2e.import_pyplot()
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes, strict=True):
        names = [s for s in switches if results.get((s, size))]
        meds = [statistics.median(results[(s, size)]) for s in names]
        lows = [m - min(results[(s, size)]) for s, m in zip(names, meds, strict=True)]
        highs = [max(results[(s, size)]) - m for s, m in zip(names, meds, strict=True)]
        ax.bar(range(len(names)), meds, yerr=[lows, highs], capsize=3,
               color=[colours[n] for n in names])
        ax.set_xticks(list(range(len(names))), names)
        ax.set_title(f"{size}-byte frames, one switch core")
        ax.set_ylabel("Mpps (both ports received)")
    fig.suptitle(command, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--sizes", default="64,1500")
    parser.add_argument("--switches", default=",".join(SWITCHES))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--plot", type=Path)
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.sizes.split(",")]
    chosen = [s for s in opts.switches.split(",") if s]
    if not OVS_DPDK.exists() and any(s.startswith("ovs") for s in chosen):
        e2e.log(f"ovs left out: {OVS_DPDK} is missing (apt-get install openvswitch-switch-dpdk)")
        chosen = [s for s in chosen if not s.startswith("ovs")]
    e2e.remove_leftovers()
    lab = e2e.Lab(Path(tempfile.mkdtemp(prefix=f"{e2e.PREFIX}-")))
    results: dict[tuple[str, int], list[float]] = {}
    before = reserve_huge_pages(lab)
    try:
        with e2e.signals_as_interrupt():
            e2e.make_switch_ns(lab)
            make_bridge(lab)
            valed = e2e.Valed(lab)
            turns: dict[str, Callable[[int], float]] = {
                "vale-poll": lambda n: vale_turn(lab, valed, n, opts.seconds,
                                                 {"busy_poll_us": "1000000", "cpus": "1"}),
                "vale": lambda n: vale_turn(lab, valed, n, opts.seconds,
                                            {"busy_poll_us": "50", "cpus": "auto"}),
                "limit": lambda n: limit_turn(lab, n, opts.seconds),
                "bridge": lambda n: bridge_turn(lab, n, opts.seconds),
                "ovs": lambda n: ovs_turn(lab, n, opts.seconds, False),
                "ovs-flows": lambda n: ovs_turn(lab, n, opts.seconds, True),
            }
            for run in range(opts.runs):
                order = chosen[run % len(chosen):] + chosen[:run % len(chosen)]
                for size in sizes:
                    for name in order:
                        mpps = turns[name](size)
                        results.setdefault((name, size), []).append(mpps)
                        e2e.log(f"run {run + 1} {size:5d} B {name:10s} {mpps:7.2f} Mpps")
    except KeyboardInterrupt:
        e2e.log("interrupted: the runs so far")
    finally:
        e2e.sh("umount", str(lab.tmp / "huge"), check=False)
        lab.teardown()
        NR_HUGEPAGES.write_text(str(before))
    lines: list[dict[str, Any]] = []
    for (name, size), values in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append({"switch": name, "size": size, "median": statistics.median(values),
                      "min": min(values), "max": max(values), "runs": values})
    for (mine, size), peers in GOALS.items():
        for peer, goal in peers:
            ratio = paired(results, mine, peer, size)
            if ratio is not None:
                lines.append({"ratio": f"{mine}/{peer}", "size": size, "paired": ratio,
                              "goal": goal, "met": None if goal is None else ratio >= goal})
    for line in lines:
        print(json.dumps(line) if opts.json else "  ".join(f"{k}={v}" for k, v in line.items()
                                                          if k != "runs"))
    if opts.plot and results:
        plot(results, sizes, opts.plot, " ".join(["bench/vm.py", *sys.argv[1:]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
