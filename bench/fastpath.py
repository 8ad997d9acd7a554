"""The forwarding core benchmark: vale's Cython core against its hand-written C twin.

    .venv/bin/python bench/fastpath.py [--json] [--runs 5] [--quick] [--cpu N] [--case NAME]
    .venv/bin/python bench/fastpath.py --against OLD_TREE [--runs 9] [--json]

Each case sets up a vale._fastpath.SwitchCore through its Python API and forwards from
one port whose RX ring is full, rewinding it when empty (SwitchCore.bench_forward), then
runs bench/fastpath_c (bench/fastpath_c.c: the same structs and stages in plain C, built
with the extension's -O2 -g0) on the same setup. The two alternate, run by run, and the
medians are compared. Every run also checks that both left the same counters (the ports',
the batch sizes, the MAC table's learned/moved/expired/evicted), and before the runs one
batch of each case is forwarded by both and what every port's TX ring then holds is
compared (a CRC-32 of the frames): the same verdicts, the same tags pushed and popped.

The cases: unicast (batch 1 to 1024, 60 and 1514 bytes), flood (to 4 ports), random
(destinations drawn among 1000 or 1M learned MACs), churn (every frame from a source MAC
of its own, a pool of 131072 cycling through a table of 65536: each frame evicts the
oldest entry and learns its source), and the VLAN cases: vlan_push (untagged frames in on
an access port of VLAN 10, out tagged on a trunk; 60 and 1514 bytes), vlan_pop (tagged
frames in on a trunk, the tag taken out, out untagged on an access port; the tags leave
the RX ring's frames as they are taken out, so a run forwards each frame of a 1M ring at
most once and is capped at that) and vlan_flood (broadcast from an access port of VLAN 10
to one of VLAN 10, one of VLAN 20 (filtered), a trunk and a port without VLAN mode (both
tagged)).

`--against OLD_TREE` measures instead this tree's core against the `_fastpath` extension
built in another tree (say a git worktree of an older commit, built in place), imported
under another name, on the cases the old core can run (no VLANs), alternating run by run;
it reports new/old (Mpps of this tree's core over the old one's: above 1 is faster now).

The machine's speed drifts (a shared host): `ratio` is therefore the median over the run
pairs of Cython/C, each pair run back to back, which cancels slow drifts that the ratio of
the two medians (`ratio_of_medians`) does not. `--cpu N` pins both sides to one CPU.

The targets in the closing summary are goals, not tests: the exit code is 0 unless
something crashed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
C_SOURCE = BENCH / "fastpath_c.c"
C_BINARY = BENCH / "fastpath_c"
C_FLAGS = ["-std=c11", "-O2", "-g0", "--param=max-inline-insns-single=200"]  # as setup.py

MAC_A = bytes.fromhex("020000000001")   # the source of the benchmarked frames, on port 0
MAC_B = bytes.fromhex("020000000002")   # the unicast destination, on port 1
BROADCAST = b"\xff" * 6
RING_SLOTS = 1024
RANDOM_RING_SLOTS = 1 << 20
RANDOM_SEED = 12345                     # as in fastpath_c.c
LCG_MULTIPLIER = 6364136223846793005
LCG_INCREMENT = 1442695040888963407
MASK64 = (1 << 64) - 1
VALE_MAX_PORTS = 256                    # verdicts, as in vale/_fastpath.pxd
VALE_FLOOD = 0xFFFE
VALE_DROP = 0xFF00

CASE_GOAL = 0.95                        # Cython/C, every case
TARGETS = {                             # summary key: (goal, what it is)
    "unicast_60": (CASE_GOAL, "Cython/C, 60-byte unicast, batch 256"),
    "unicast_1514": (CASE_GOAL, "Cython/C, 1514-byte unicast, batch 256"),
    "random_1m_vs_small": (0.5, "Cython random_1m / random_small"),
}
CHURN_POOL = 1 << 17                    # churn: source MACs, one frame each; table: half
VLAN = 10                               # the VLAN cases' frames travel in VLAN 10
OTHER_VLAN = 20
OLD_KINDS = ("unicast", "flood", "random", "churn")    # what --against compares


@dataclass(frozen=True)
class Case:
    name: str                           # unicast, flood, random_small, random_1m, churn, ...
    kind: str                           # what fastpath_c calls it: unicast, random, ...
    frame_size: int                     # untagged (vlan_pop's frames come with 4 more)
    batch: int
    table_size: int = 0                 # random: destinations among so many; churn: sources
    max_frames: int = 0                 # a run's most frames (0: no limit)


@dataclass
class Result:
    case: Case
    frames: int                         # asked per run; a run forwards whole batches
    mpps: list[float] = field(default_factory=list)
    c_mpps: list[float] = field(default_factory=list)
    counters_match: bool = True
    tx_match: bool = True               # one batch: the same frames on every port
    verdicts: dict[str, int] = field(default_factory=dict)     # of that batch, the C twin's


def all_cases() -> list[Case]:
    cases = [Case("unicast", "unicast", size, batch)
             for size in (60, 1514) for batch in (1, 32, 256, 1024)]
    cases.append(Case("flood", "flood", 60, 256))
    cases.append(Case("random_small", "random", 60, 256, 1000))
    cases.append(Case("random_1m", "random", 60, 256, 1_000_000))
    cases.append(Case("churn", "churn", 60, 256, CHURN_POOL))
    cases.append(Case("vlan_push", "vlan_push", 60, 256))
    cases.append(Case("vlan_push", "vlan_push", 1514, 256))
    cases.append(Case("vlan_pop", "vlan_pop", 60, 256, max_frames=RANDOM_RING_SLOTS))
    cases.append(Case("vlan_flood", "vlan_flood", 60, 256))
    return cases


# -- the C twin ------------------------------------------------------------------------

def build_c() -> None:
    """Compile fastpath_c.c unless the binary is newer than it."""
    if C_BINARY.exists() and C_BINARY.stat().st_mtime >= C_SOURCE.stat().st_mtime:
        return
    subprocess.run(["gcc", *C_FLAGS, "-o", str(C_BINARY), str(C_SOURCE)], check=True)


def c_output(case: Case, frames: int) -> dict[str, Any]:
    args = [str(C_BINARY), case.kind, str(case.frame_size), str(case.batch), str(frames)]
    if case.table_size:
        args.append(str(case.table_size))
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out)
    return result


def c_counters(result: dict[str, Any]) -> dict[str, Any]:
    return {key: result[key] for key in ("batches", "batch_hist", "fdb", "ports")}


def run_c(case: Case, frames: int) -> tuple[float, dict[str, Any]]:
    """One run of the C twin: Mpps and the counters of its timed loop."""
    result = c_output(case, frames)
    return result["frames"] * 1e3 / result["ns"], c_counters(result)


# -- the Cython core -------------------------------------------------------------------

def load_switch_core() -> Any:
    """vale._fastpath.SwitchCore from this tree (build it with setup.py build_ext)."""
    sys.path.insert(0, str(ROOT))
    from vale._fastpath import SwitchCore

    return SwitchCore


def frame(dst: bytes, src: bytes, size: int, vlan: int = 0) -> bytes:
    """Destination, source, a tag of `vlan` unless 0 (4 bytes more), IPv4 ethertype,
    zeroes: as make_frame in fastpath_c.c."""
    tag = b"\x81\x00" + vlan.to_bytes(2, "big") if vlan else b""
    return (dst + src + tag + b"\x08\x00").ljust(size + len(tag), b"\0")


def table_mac(j: int) -> bytes:
    """The j-th MAC of the random cases, 02:10:jj:jj:jj:jj as in fastpath_c.c."""
    return b"\x02\x10" + j.to_bytes(4, "big")


def churn_mac(j: int) -> bytes:
    """The j-th source MAC of the churn case, 02:20:jj:jj:jj:jj as in fastpath_c.c."""
    return b"\x02\x20" + j.to_bytes(4, "big")


def slot_size_for(case: Case) -> int:
    if case.kind in ("random", "churn", "vlan_pop"):
        return 64
    if case.frame_size <= 1984:
        return 2048
    return (case.frame_size + 63) & ~63


def random_capacity(table_size: int) -> int:
    """A power of two with room for the table and the source MAC, as in fastpath_c.c."""
    capacity = 1
    while capacity < table_size + 1:
        capacity <<= 1
    return capacity


def random_destinations(table_size: int, count: int) -> list[int]:
    """The table index of each frame's destination: the 64-bit LCG of fastpath_c.c."""
    state = RANDOM_SEED
    out = []
    for _ in range(count):
        state = (state * LCG_MULTIPLIER + LCG_INCREMENT) & MASK64
        out.append((state >> 33) % table_size)
    return out


@dataclass(frozen=True)
class Step:
    """Inject frames into a port's RX ring, then forward them all or leave them there."""
    port: int
    frames: list[bytes]
    forward: bool


def setup_steps(case: Case) -> list[Step]:
    """What fills the switch, as in fastpath_c.c: made once per case, replayed per run."""
    size = case.frame_size
    if case.kind in ("flood", "vlan_flood"):
        return [Step(0, [frame(BROADCAST, MAC_A, size)] * RING_SLOTS, False)]
    if case.kind == "unicast":
        return [Step(1, [frame(MAC_A, MAC_B, size)], True),    # MAC_B learned on port 1
                Step(0, [frame(MAC_B, MAC_A, size)] * RING_SLOTS, False)]
    if case.kind == "vlan_push":                # MAC_B learned on the trunk, in VLAN 10
        return [Step(1, [frame(MAC_A, MAC_B, size, VLAN)], True),
                Step(0, [frame(MAC_B, MAC_A, size)] * RING_SLOTS, False)]
    if case.kind == "vlan_pop":                 # MAC_B learned on the access port
        return [Step(1, [frame(MAC_A, MAC_B, size)], True),
                Step(0, [frame(MAC_B, MAC_A, size, VLAN)] * RANDOM_RING_SLOTS, False)]
    if case.kind == "churn":
        # Forwarded once so the table starts full, then the same frames again for the runs.
        sources = [frame(MAC_B, churn_mac(j), size) for j in range(case.table_size)]
        return [Step(1, [frame(MAC_A, MAC_B, size)], True),
                Step(0, sources, True), Step(0, sources, False)]
    # Learn the table on port 1 in order. Every frame goes to the first MAC, which sits on
    # port 1 itself, so these frames are learned and dropped, never sent anywhere.
    steps = [Step(1, [frame(table_mac(0), table_mac(j), size)
                      for j in range(start, min(start + RING_SLOTS, case.table_size))], True)
             for start in range(0, case.table_size, RING_SLOTS)]
    macs = [table_mac(j) for j in range(case.table_size)]
    dests = random_destinations(case.table_size, RANDOM_RING_SLOTS)
    chunk = 1 << 16
    steps += [Step(0, [frame(macs[j], MAC_A, size) for j in dests[start:start + chunk]], False)
              for start in range(0, RANDOM_RING_SLOTS, chunk)]
    return steps


def make_core(switch_core: Any, case: Case, steps: list[Step]) -> Any:
    """A SwitchCore set up as fastpath_c.c sets up its switch, source RX ring full."""
    slot_size = slot_size_for(case)
    if case.kind == "random":
        core = switch_core(batch=case.batch, capacity=random_capacity(case.table_size))
        core.add_port(rx_slots=RANDOM_RING_SLOTS, slot_size=slot_size)
        core.add_port(slot_size=slot_size)
    elif case.kind == "churn":
        core = switch_core(batch=case.batch, capacity=case.table_size // 2)
        core.add_port(rx_slots=case.table_size, slot_size=slot_size)
        core.add_port(slot_size=slot_size)
    elif case.kind == "vlan_pop":
        core = switch_core(batch=case.batch, capacity=65536)
        core.add_port(rx_slots=RANDOM_RING_SLOTS, slot_size=slot_size)
        core.add_port(slot_size=slot_size)
    else:
        core = switch_core(batch=case.batch, capacity=65536)
        for _ in range(5 if case.kind in ("flood", "vlan_flood") else 2):
            core.add_port(rx_slots=RING_SLOTS, slot_size=slot_size)
    access, trunk = ("access", VLAN), ("trunk", [VLAN, OTHER_VLAN])
    vlans = {"vlan_push": [trunk if i else access for i in range(2)],
             "vlan_pop": [access if i else trunk for i in range(2)],
             "vlan_flood": [access, access, ("access", OTHER_VLAN), trunk]}
    for index, vlan in enumerate(vlans.get(case.kind, [])):
        core.set_port(index, vlan=vlan)
    for step in steps:
        core.inject(step.port, step.frames)
        if step.forward:
            core.forward_all()
    for index in core.snapshot()["ports"]:      # TX rings empty, as in fastpath_c.c
        core.drain(index)
    return core


def port_counters(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for index in sorted(snapshot["ports"]):
        port = snapshot["ports"][index]
        out.append({
            "rx_packets": port["rx_packets"], "rx_bytes": port["rx_bytes"],
            "tx_packets": port["tx_packets"], "tx_bytes": port["tx_bytes"],
            "flood_packets": port["flood_packets"],
            "drops": list(port["drops"].values()),     # the core's order: the enum's
        })
    return out


def counters_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What one run added to the counters, in the shape fastpath_c prints."""
    ports = []
    for old, new in zip(port_counters(before), port_counters(after), strict=True):
        port: dict[str, Any] = {key: new[key] - old[key] for key in new if key != "drops"}
        port["drops"] = [n - o for o, n in zip(old["drops"], new["drops"], strict=True)]
        ports.append(port)
    return {
        "batches": after["batches"] - before["batches"],
        "batch_hist": [n - o for o, n in zip(before["batch_hist"], after["batch_hist"],
                                              strict=True)],
        "fdb": {key: after["fdb"][key] - before["fdb"][key]
                for key in ("learned", "moved", "expired", "evicted")},
        "ports": ports,
    }


def run_cython(core: Any, frames: int) -> tuple[float, dict[str, Any]]:
    """One run of the Cython core: Mpps and the counters of its timed loop."""
    before = core.snapshot()
    done, ns = core.bench_forward(0, frames)
    return done * 1e3 / ns, counters_between(before, core.snapshot())


def tx_crc(frames: list[bytes]) -> int:
    """CRC-32 of each frame's length (4 bytes, little-endian) and bytes, as fastpath_c.c."""
    crc = 0
    for data in frames:
        crc = zlib.crc32(data, zlib.crc32(len(data).to_bytes(4, "little"), crc))
    return crc


def verdict_name(verdict: int) -> str:
    """fastpath_c reads verdicts back from the chains: a dropped frame is in none, so it
    prints VALE_DROP alone (the reasons are in the counters)."""
    if verdict < VALE_MAX_PORTS:
        return f"port {verdict}"
    if verdict == VALE_FLOOD:
        return "flood"
    return "drop"


def check_batch(switch_core: Any, case: Case, steps: list[Step], result: Result) -> None:
    """One batch forwarded by both: the same counters, the same frames on every port."""
    core = make_core(switch_core, case, steps)
    before = core.snapshot()
    core.forward(0)
    counters = counters_between(before, core.snapshot())
    crcs = [tx_crc(core.drain(index)) for index in sorted(before["ports"])]
    c = c_output(case, 0)
    result.verdicts = dict(Counter(verdict_name(v) for v in c["verdicts"]))
    if counters != c_counters(c):
        result.counters_match = False
        print(f"{case.name}: one batch's counters differ: cython {counters} "
              f"c {c_counters(c)}", file=sys.stderr)
    if crcs != c["tx_crc"]:
        result.tx_match = False
        print(f"{case.name}: one batch's TX frames differ: cython {crcs} c {c['tx_crc']}",
              file=sys.stderr)


# -- measuring -------------------------------------------------------------------------

def frames_for(core: Any, case: Case, seconds: float) -> int:
    """Frames for a run of about `seconds`, from a trial run of the Cython core."""
    done, ns = core.bench_forward(0, 200_000)
    frames = max(10_000, int(done * 1e9 / ns * seconds))
    return min(frames, case.max_frames) if case.max_frames else frames


def measure(switch_core: Any, case: Case, runs: int, seconds: float) -> Result:
    steps = setup_steps(case)
    result = Result(case, frames_for(make_core(switch_core, case, steps), case, seconds))
    check_batch(switch_core, case, steps, result)
    for run in range(runs):
        # Alternate which goes first, so drift and warm-up favour neither. Like each C run
        # in its new process, each Cython run gets a new switch: its rings land on other
        # physical pages, whose cache-set conflicts (2048-byte slots) vary from one
        # allocation to the next, so one unlucky switch must not count for every run.
        order = ("cython", "c") if run % 2 == 0 else ("c", "cython")
        counters: dict[str, dict[str, Any]] = {}
        for which in order:
            if which == "cython":
                mpps, counters[which] = run_cython(make_core(switch_core, case, steps),
                                                   result.frames)
                result.mpps.append(mpps)
            else:
                mpps, counters[which] = run_c(case, result.frames)
                result.c_mpps.append(mpps)
        if counters["cython"] != counters["c"]:
            result.counters_match = False
            print(f"{case.name}: counters differ: cython {counters['cython']} "
                  f"c {counters['c']}", file=sys.stderr)
    return result


def gbps(mpps: float, frame_size: int) -> float:
    return mpps * frame_size * 8 / 1000


def report(result: Result) -> dict[str, Any]:
    case = result.case
    mpps = statistics.median(result.mpps)
    c_mpps = statistics.median(result.c_mpps)
    paired = statistics.median(cy / c for cy, c in zip(result.mpps, result.c_mpps, strict=True))
    row: dict[str, Any] = {
        "case": case.name, "frame_size": case.frame_size, "batch": case.batch,
        "mpps": round(mpps, 3), "gbps": round(gbps(mpps, case.frame_size), 3),
        "c_mpps": round(c_mpps, 3), "c_gbps": round(gbps(c_mpps, case.frame_size), 3),
        "ratio": round(paired, 3), "ratio_of_medians": round(mpps / c_mpps, 3),
        "runs": len(result.mpps),
        "frames": result.frames, "counters_match": result.counters_match,
        "tx_match": result.tx_match, "verdicts": result.verdicts,
        "mpps_runs": [round(x, 2) for x in result.mpps],
        "c_mpps_runs": [round(x, 2) for x in result.c_mpps],
    }
    if case.table_size:
        row["table_size"] = case.table_size
    return row


def case_label(row: dict[str, Any]) -> str:
    return f"{row['case']} {row['frame_size']}/{row['batch']}"


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def find(name: str, frame_size: int = 60, batch: int = 256) -> dict[str, Any]:
        return next(r for r in rows
                    if r["case"] == name and r["frame_size"] == frame_size
                    and r["batch"] == batch)

    values = {
        "unicast_60": find("unicast")["ratio"],
        "unicast_1514": find("unicast", 1514)["ratio"],
        "random_1m_vs_small": find("random_1m")["ratio_vs_small"],
    }
    met = {key: values[key] >= goal for key, (goal, _) in TARGETS.items()}
    missed = [case_label(r) for r in rows if r["ratio"] < CASE_GOAL]
    return {"case": "summary", **values,
            "targets": {key: goal for key, (goal, _) in TARGETS.items()},
            "case_goal": CASE_GOAL, "cases_missed": missed,
            "met": met, "all_met": all(met.values()) and not missed,
            "counters_match": all(r["counters_match"] for r in rows),
            "tx_match": all(r["tx_match"] for r in rows)}


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any] | None) -> None:
    print(f"{'case':<13}{'size':>6}{'batch':>7}{'Mpps':>9}{'Gbit/s':>9}"
          f"{'C Mpps':>9}{'C Gbit/s':>10}{'ratio':>7}  counters, TX")
    for r in rows:
        extra = f"  ({r['ratio_vs_small']:.2f} x small)" if "ratio_vs_small" in r else ""
        same = "same" if r["counters_match"] and r["tx_match"] else "DIFFER"
        print(f"{r['case']:<13}{r['frame_size']:>6}{r['batch']:>7}{r['mpps']:>9.2f}"
              f"{r['gbps']:>9.2f}{r['c_mpps']:>9.2f}{r['c_gbps']:>10.2f}{r['ratio']:>7.2f}"
              f"  {same}{extra}")
    if summary is None:
        return
    print()
    for key, (goal, what) in TARGETS.items():
        verdict = "met" if summary["met"][key] else "MISSED"
        print(f"{what}: {summary[key]:.2f} (goal >= {goal}) {verdict}")
    missed = ", ".join(summary["cases_missed"]) or "none"
    print(f"Cases under Cython/C {CASE_GOAL}: {missed}")


# -- this core against an older one ----------------------------------------------------

def load_old_switch_core(tree: Path) -> Any:
    """SwitchCore of the _fastpath extension built in another tree, as vale_old._fastpath
    (the name must end in _fastpath: its init function is PyInit__fastpath)."""
    built = sorted((tree / "vale").glob("_fastpath.*.so"))
    if not built:
        raise SystemExit(f"no _fastpath extension built in {tree / 'vale'}")
    spec = importlib.util.spec_from_file_location("vale_old._fastpath", built[0])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SwitchCore


def measure_against(new: Any, old: Any, case: Case, runs: int, seconds: float
                    ) -> dict[str, Any]:
    """Both cores on one case, alternating which goes first, a new switch each run."""
    steps = setup_steps(case)
    frames = frames_for(make_core(new, case, steps), case, seconds)
    mpps: dict[str, list[float]] = {"new": [], "old": []}
    for run in range(runs):
        for which in (("new", "old") if run % 2 == 0 else ("old", "new")):
            core = make_core(new if which == "new" else old, case, steps)
            done, ns = core.bench_forward(0, frames)
            mpps[which].append(done * 1e3 / ns)
    new_mpps, old_mpps = statistics.median(mpps["new"]), statistics.median(mpps["old"])
    row: dict[str, Any] = {
        "case": case.name, "frame_size": case.frame_size, "batch": case.batch,
        "mpps": round(new_mpps, 3), "old_mpps": round(old_mpps, 3),
        "new_vs_old": round(statistics.median(
            n / o for n, o in zip(mpps["new"], mpps["old"], strict=True)), 3),
        "new_vs_old_of_medians": round(new_mpps / old_mpps, 3),
        "runs": runs, "frames": frames,
        "mpps_runs": [round(x, 2) for x in mpps["new"]],
        "old_mpps_runs": [round(x, 2) for x in mpps["old"]],
    }
    if case.table_size:
        row["table_size"] = case.table_size
    return row


def run_against(tree: Path, cases: list[Case], runs: int, seconds: float,
                as_json: bool) -> None:
    new, old = load_switch_core(), load_old_switch_core(tree)
    rows = []
    for case in cases:
        if case.kind not in OLD_KINDS:
            continue
        row = measure_against(new, old, case, runs, seconds)
        rows.append(row)
        if as_json:
            print(json.dumps(row), flush=True)
    ratios = [r["new_vs_old"] for r in rows]
    summary = {"case": "summary", "against": str(tree), "min_new_vs_old": min(ratios),
               "median_new_vs_old": round(statistics.median(ratios), 3)}
    if as_json:
        print(json.dumps(summary))
        return
    print(f"{'case':<13}{'size':>6}{'batch':>7}{'new Mpps':>10}{'old Mpps':>10}{'new/old':>9}")
    for r in rows:
        print(f"{r['case']:<13}{r['frame_size']:>6}{r['batch']:>7}{r['mpps']:>10.2f}"
              f"{r['old_mpps']:>10.2f}{r['new_vs_old']:>9.3f}")
    print(f"\nnew/old (Mpps, paired medians): median {summary['median_new_vs_old']:.3f}, "
          f"lowest {summary['min_new_vs_old']:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--runs", type=int, default=5, help="runs of each side (default 5)")
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    parser.add_argument("--cpu", type=int, help="pin both sides to this CPU")
    parser.add_argument("--against", type=Path, metavar="OLD_TREE",
                        help="this core against the one built in OLD_TREE (no C runs)")
    parser.add_argument("--case", action="append", metavar="NAME",
                        help="only this case (repeatable; no summary of the targets)")
    args = parser.parse_args()
    cases = [c for c in all_cases() if not args.case or c.name in args.case]
    if not cases:
        parser.error(f"no case named {', '.join(args.case)}")
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})     # the C runs inherit it
    runs = max(1, args.runs)
    seconds = 0.05 if args.quick else 0.3
    if args.against is not None:
        run_against(args.against.resolve(), cases, runs, seconds, args.json)
        return 0

    build_c()
    switch_core = load_switch_core()
    rows: list[dict[str, Any]] = []
    for case in cases:
        row = report(measure(switch_core, case, runs, seconds))
        small = next((r for r in rows if r["case"] == "random_small"), None)
        if case.name == "random_1m" and small is not None:
            row["ratio_vs_small"] = round(row["mpps"] / small["mpps"], 3)
            row["c_ratio_vs_small"] = round(row["c_mpps"] / small["c_mpps"], 3)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    summary = summarize(rows) if not args.case else None
    if args.json:
        if summary is not None:
            print(json.dumps(summary))
    else:
        print_table(rows, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
