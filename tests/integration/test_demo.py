"""The README's main job, `make run`: the demo shows traffic through vale0 and removes
everything it made. Needs root (see conftest)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.integration.conftest import finish, sh


def test_the_demo_shows_traffic_and_leaves_nothing_behind():
    demo = subprocess.Popen([sys.executable, "-m", "vale.demo", "--duration", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    out, err = finish(demo, 120)
    assert demo.returncode == 0, err[-2000:]
    assert len(re.findall(r"rtt min/avg/max/mdev = [\d.]+/[\d.]+", out)) == 2, out
    assert "learned 3" in out, out
    if shutil.which("iperf3"):
        # iperf 3.12 exits 0 even when it could not connect: the demo must wait for a rate.
        assert re.search(r"\n\d+\.\d\d Gbit/s through vale0\n", out), out
    # What it made is gone: its namespaces and links (named after its PID), its valed's
    # directory.
    prefix = f"vd{demo.pid}"
    assert prefix not in sh("ip", "netns", "list").stdout
    assert prefix not in sh("ip", "-o", "link").stdout
    workdir = re.search(r"valed on (\S+)/valed\.sock", out)
    assert workdir and not Path(workdir.group(1)).exists()
