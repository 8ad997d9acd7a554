"""systemd/valed.service under a real systemd, in a throwaway container that
systemd/check.sh boots (systemd-nspawn): READY, the socket's modes, reload, a restart
after kill -9 with the ports and a TAP's MAC back, the watchdog, a clean stop. Needs root
(see conftest), systemd-nspawn and the system's python3 with venv and its headers."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(shutil.which("systemd-nspawn") is None,
                    reason="needs systemd-nspawn (Debian: systemd-container)")
def test_the_unit_runs_under_a_real_systemd():
    check = subprocess.Popen([str(ROOT / "systemd" / "check.sh")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _, err = check.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        check.terminate()                   # its EXIT trap stops the container
        check.communicate(timeout=60)
        raise
    if check.returncode == 77:
        pytest.skip(err.strip().splitlines()[-1])
    assert check.returncode == 0, err[-4000:]
    assert "check-systemd: all passed" in err and "FAIL" not in err, err[-4000:]
