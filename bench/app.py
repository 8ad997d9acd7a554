"""Application ports: frames circling through a switch between the two memif ports of one
testpmd, in the layout bench/vm.py uses (../shared/docs/vm-and-app-ports.md, "Measuring"),
and the Python API's own rates.

    .venv/bin/python bench/app.py [--runs 3] [--seconds 8] [--sizes 64,1500] [--json]
                                  [--plot FILE] [--switches vale-memif,...]

The load is bench/vm.py's: one dpdk-testpmd owning two ports (its forwarding lcore on CPU
0), `--forward-mode=mac` each to the other's MAC, 16 bursts of 32 per port in flight; the
figure is both ports' receive rate, the median second after a warm-up. The switch gets
CPU 1:

- `vale-memif`: valed's vale0, busy-polling and pinned, two `--memif` ports the load's
  `net_memif` (role=client) ports attach to;
- `vale-vhost`: the same with two `--vhost-user` ports and `net_virtio_user` (vm.py's
  `vale-poll`);
- `limit`: the memif rings' limit: a second testpmd with two `net_memif` servers, `io`
  forwarding on CPU 1 (no switch);
- `vale-veth`: the load's ports are `net_af_packet` on veths vale attaches (packet
  sockets, the kernel fast path off): the same program pair without shared memory.

And the Python API (vale.app), each against testpmd's memif server on the other CPU (two
busy threads, no more): `py-send` is `valectl pktgen` sending to testpmd in `rxonly`,
`py-count` is `valectl pktcount` counting what testpmd's `txonly` sends; their figure is
what they print.

Ratios are paired per run (the median of the per-run ratios). Needs root, dpdk-testpmd
and 2 MiB huge pages, which it reserves and gives back. Everything it makes is removed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import e2e
import vm

MAC0, MAC1 = vm.MAC0, vm.MAC1
SWITCHES = ("vale-memif", "vale-vhost", "limit", "vale-veth", "py-send", "py-count")
COLOURS = {"vale-memif": "#1f77b4", "vale-vhost": "#8cc4ec", "limit": "#7f7f7f",
           "vale-veth": "#2ca02c", "py-send": "#9467bd", "py-count": "#c5b0d5"}
POLL = {"busy_poll_us": "1000000", "cpus": "1"}
GOALS = {("vale-memif", 64): [("vale-vhost", 1.0), ("limit", None), ("vale-veth", 10.0)]}
FLOORS = {("vale-memif", 64): 10.0, ("py-count", 64): 2.0, ("py-send", 64): 5.0}   # Mpps


def memif_load(lab: e2e.Lab, size: int, socks: list[str]) -> subprocess.Popen[bytes]:
    return vm.load(lab, size, [f"net_memif{k},role=client,socket={s},socket-abstract=no,"
                               f"id={k},mac={mac}"
                               for k, (s, mac) in enumerate(zip(socks, (MAC0, MAC1),
                                                                strict=True))])


def memif_turn(lab: e2e.Lab, valed: e2e.Valed, size: int, seconds: float) -> float:
    socks = [str(lab.tmp / f"app{k}.sock") for k in (0, 1)]
    for k, sock in enumerate(socks):
        valed.call("create", name=f"app{k}", kind="memif", switch="vale0", path=sock, id=k)
    try:
        valed.call("set", target="vale0", settings=POLL)
        proc = memif_load(lab, size, socks)
        return vm.rate(lab, proc, seconds)
    finally:
        vm.stop_load(lab)
        for k in (0, 1):
            valed.call("remove", name=f"app{k}")


def wait_forwarding(lab: e2e.Lab, name: str) -> None:
    """DPDK 22.11's memif server listens before its port is set up: a client that comes
    that early is refused, or never sent to. Wait until testpmd `name` forwards (its
    log line-buffered)."""
    deadline = time.monotonic() + 20
    log = lab.tmp / f"{name}.log"
    while not log.exists() or b"Press enter to exit" not in log.read_bytes():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the memif server testpmd ({name}) did not start forwarding")
        time.sleep(0.1)


def limit_turn(lab: e2e.Lab, size: int, seconds: float) -> float:
    socks = [str(lab.tmp / f"limit{k}.sock") for k in (0, 1)]
    (lab.tmp / "limit.log").unlink(missing_ok=True)
    vm.testpmd(lab, "limit", "0@0,1@1", [f"net_memif{k},role=server,socket={s},"
                                         f"socket-abstract=no,id={k}"
                                         for k, s in enumerate(socks)], ["--forward-mode=io"],
               wrap=("stdbuf", "-oL"))
    try:
        wait_forwarding(lab, "limit")
        proc = memif_load(lab, size, socks)
        return vm.rate(lab, proc, seconds)
    finally:
        vm.stop_load(lab)
        lab.stop("limit")


def make_veths(lab: e2e.Lab, valed: e2e.Valed) -> None:
    """In the switch namespace: two veth pairs, cK attached to vale0, dK for testpmd."""
    ns = e2e.SWITCH_NS
    for k in (0, 1):
        c, d = f"{e2e.PREFIX}c{k}", f"{e2e.PREFIX}d{k}"
        e2e.sh("ip", "-n", ns, "link", "add", c, "type", "veth", "peer", "name", d)
        for dev in (c, d):
            e2e.sh("ip", "-n", ns, "link", "set", dev, "up")
        valed.call("attach", port=f"vale0:{c}")


def veth_turn(lab: e2e.Lab, valed: e2e.Valed, size: int, seconds: float) -> float:
    ns = e2e.SWITCH_NS
    macs = [e2e.sh(*e2e.in_ns(ns, "cat", f"/sys/class/net/{e2e.PREFIX}d{k}/address")).stdout
            .strip() for k in (0, 1)]
    valed.call("set", target="vale0", settings={**POLL, "fastpath": "off"})
    try:
        proc = vm.load(lab, size, [f"net_af_packet{k},iface={e2e.PREFIX}d{k},qpairs=1"
                                   for k in (0, 1)],
                       wrap=("ip", "netns", "exec", ns), peers=(macs[1], macs[0]))
        return vm.rate(lab, proc, seconds)
    finally:
        vm.stop_load(lab)
        valed.call("set", target="vale0", settings={"fastpath": "on"})


def api_turn(lab: e2e.Lab, size: int, seconds: float, sending: bool) -> float:
    """valectl pktgen (sending) or pktcount on CPU 0 against testpmd's memif server on CPU 1;
    Mpps as the tool reports it."""
    sock = str(lab.tmp / "py.sock")
    (lab.tmp / "peer.log").unlink(missing_ok=True)
    mode = ["--forward-mode=rxonly"] if sending else ["--forward-mode=txonly",
                                                     f"--txpkts={size}"]
    vm.testpmd(lab, "peer", "0@0,1@1", [f"net_memif0,role=server,socket={sock},"
                                        "socket-abstract=no"], [*mode, "--auto-start"],
               wrap=("stdbuf", "-oL"))            # its lines in the log as they come
    try:
        wait_forwarding(lab, "peer")
        tool = (["pktgen", sock, "--size", str(size - 4)] if sending
                else ["pktcount", sock])
        out = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "cli.valectl", *tool,
                              "--seconds", str(seconds), "--json"], cwd=e2e.ROOT, check=True,
                             capture_output=True, text=True, timeout=seconds + 60).stdout
        return float(json.loads(out)["mpps"])
    finally:
        lab.stop("peer")


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
    e2e.remove_leftovers()
    lab = e2e.Lab(Path(tempfile.mkdtemp(prefix=f"{e2e.PREFIX}-")))
    results: dict[tuple[str, int], list[float]] = {}
    before = vm.reserve_huge_pages(lab)
    try:
        with e2e.signals_as_interrupt():
            e2e.make_switch_ns(lab)
            valed = e2e.Valed(lab)
            make_veths(lab, valed)
            turns: dict[str, Callable[[int], float]] = {
                "vale-memif": lambda n: memif_turn(lab, valed, n, opts.seconds),
                "vale-vhost": lambda n: vm.vale_turn(lab, valed, n, opts.seconds, POLL),
                "limit": lambda n: limit_turn(lab, n, opts.seconds),
                "vale-veth": lambda n: veth_turn(lab, valed, n, opts.seconds),
                "py-send": lambda n: api_turn(lab, n, opts.seconds, True),
                "py-count": lambda n: api_turn(lab, n, opts.seconds, False),
            }
            for run in range(opts.runs):
                order = chosen[run % len(chosen):] + chosen[:run % len(chosen)]
                for size in sizes:
                    for name in order:
                        try:
                            mpps = turns[name](size)
                        except (RuntimeError, subprocess.CalledProcessError) as exc:
                            e2e.log(f"run {run + 1} {size:5d} B {name:10s} failed: {exc}")
                            continue
                        results.setdefault((name, size), []).append(mpps)
                        e2e.log(f"run {run + 1} {size:5d} B {name:10s} {mpps:7.2f} Mpps")
    except KeyboardInterrupt:
        e2e.log("interrupted: the runs so far")
    finally:
        e2e.sh("umount", str(lab.tmp / "huge"), check=False)
        lab.teardown()
        vm.NR_HUGEPAGES.write_text(str(before))
    lines: list[dict[str, Any]] = []
    for (name, size), values in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        floor = FLOORS.get((name, size))
        lines.append({"switch": name, "size": size, "median": statistics.median(values),
                      "min": min(values), "max": max(values), "runs": values,
                      **({"goal_mpps": floor, "met": statistics.median(values) >= floor}
                         if floor else {})})
    for (mine, size), peers in GOALS.items():
        for peer, goal in peers:
            ratio = vm.paired(results, mine, peer, size)
            if ratio is not None:
                lines.append({"ratio": f"{mine}/{peer}", "size": size, "paired": ratio,
                              "goal": goal, "met": None if goal is None else ratio >= goal})
    for line in lines:
        print(json.dumps(line) if opts.json else "  ".join(f"{k}={v}" for k, v in line.items()
                                                          if k != "runs"))
    if opts.plot and results:
        vm.plot(results, sizes, opts.plot, " ".join(["bench/app.py", *sys.argv[1:]]),
                SWITCHES, COLOURS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
