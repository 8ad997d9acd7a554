"""Instructions per forwarded frame, counted by callgrind: the forwarding core against its
C twin, and against the core built in another tree.

    .venv/bin/python bench/instructions.py [--against OLD_TREE] [--case NAME] [--json]

Timings on a shared machine wobble by 10% from run to run; instruction counts do not
(valgrind's callgrind counts them, whatever else the machine does). For each case of
bench/fastpath.py (set up the same way) this counts what bench_forward executes in the
Cython core (and in the old tree's core, with --against) and what forward_port executes in
bench/fastpath_c, each twice with a different number of frames: the difference over the
difference in frames is the cost per frame, without the set-up. It is not a speed (a
frame that waits for memory costs more time than its instructions say), but it shows
whether a change added work per frame, and where the two cores differ.

Needs valgrind. The --one mode is what runs under it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import fastpath as fp

FRAMES = (50_000, 150_000)      # two runs: the per-frame cost is their difference's
ROUND = 1


def callgrind(command: list[str], toggle: str) -> tuple[int, str]:
    """Instructions executed inside `toggle` (a function name pattern) and the output."""
    with tempfile.TemporaryDirectory(prefix="vale-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        run = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              f"--toggle-collect={toggle}", *command],
                             check=True, capture_output=True, text=True)
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1]), run.stdout
    raise RuntimeError(f"callgrind wrote no totals for {command}")


def cython_count(tree: Path | None, case: fp.Case, frames: int) -> tuple[int, int]:
    """(instructions, frames forwarded) of bench_forward on one case."""
    command = [sys.executable, __file__, "--one", str(tree or ""), case.name,
               str(case.frame_size), str(case.batch), str(frames)]
    count, out = callgrind(command, "*bench_forward*")
    return count, int(out.split()[0])


def c_count(case: fp.Case, frames: int) -> tuple[int, int]:
    args = [str(fp.C_BINARY), case.kind, str(case.frame_size), str(case.batch), str(frames)]
    if case.table_size:
        args.append(str(case.table_size))
    count, out = callgrind(args, "forward_port")
    return count, json.loads(out)["frames"]


def per_frame(count: Any, *args: Any) -> float:
    (i1, f1), (i2, f2) = (count(*args, frames) for frames in FRAMES)
    return (i2 - i1) / (f2 - f1)


def run_one(tree: str, name: str, size: int, batch: int, frames: int) -> None:
    """Under valgrind: set a case up and forward `frames` frames through bench_forward."""
    core_class = fp.load_old_switch_core(Path(tree)) if tree else fp.load_switch_core()
    case = next(c for c in fp.all_cases()
                if (c.name, c.frame_size, c.batch) == (name, size, batch))
    core = fp.make_core(core_class, case, fp.setup_steps(case))
    done, _ = core.bench_forward(0, frames)
    print(done)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, metavar="OLD_TREE",
                        help="also count the core built in OLD_TREE (cases it can run)")
    parser.add_argument("--case", action="append", metavar="NAME", help="only this case")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        tree, name, size, batch, frames = args.one
        run_one(tree, name, int(size), int(batch), int(frames))
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    fp.build_c()
    old = args.against.resolve() if args.against else None
    header = f"{'case':<13}{'size':>6}{'batch':>7}{'Cython':>9}{'C':>8}{'Cy/C':>7}"
    if old:
        header += f"{'old':>8}{'new/old':>9}"
    if not args.json:
        print("instructions per frame\n" + header)
    for case in fp.all_cases():
        if args.case and case.name not in args.case:
            continue
        row: dict[str, Any] = {"case": case.name, "frame_size": case.frame_size,
                               "batch": case.batch}
        row["cython"] = round(per_frame(cython_count, None, case), ROUND)
        row["c"] = round(per_frame(c_count, case), ROUND)
        line = (f"{case.name:<13}{case.frame_size:>6}{case.batch:>7}{row['cython']:>9}"
                f"{row['c']:>8}{row['cython'] / row['c']:>7.2f}")
        if old and case.kind in fp.OLD_KINDS:
            row["old"] = round(per_frame(cython_count, old, case), ROUND)
            line += f"{row['old']:>8}{row['cython'] / row['old']:>9.3f}"
        print(json.dumps(row) if args.json else line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
