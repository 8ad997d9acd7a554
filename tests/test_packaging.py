"""The Debian package's sources (debian/) against the rest of the tree, without building
it: one version, build dependencies CI installs, pinned dependencies that meet
pyproject's, and the paths the unit runs being the ones the package puts on the PATH.
(make check-systemd builds and installs it: tests/integration/test_systemd_unit.py.)"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement

from tests.conftest import ROOT

DEBIAN = ROOT / "debian"


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def makefile_debs() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    match = re.search(r"^DEBS := ((?:.*\\\n)*.*)$", text, re.M)
    assert match
    return set(match.group(1).replace("\\\n", " ").split())


def test_the_package_has_pyproject_s_version():
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"vale ({pyproject()['project']['version']}) ")


def test_ci_installs_what_building_the_package_needs():
    control = (DEBIAN / "control").read_text()
    build_depends = re.search(r"^Build-Depends: (.*?)\n(?=\S)", control, re.M | re.S)
    assert build_depends
    names = {re.sub(r"\s*\(.*?\)", "", dep).strip()
             for dep in build_depends.group(1).split(",")}
    # (python3 comes with python3-venv and python3-dev)
    names = {n for n in names if n and not n.startswith("debhelper-compat")} | {"debhelper"}
    names -= {"python3"}
    assert names <= makefile_debs(), names - makefile_debs()


def test_the_pinned_dependencies_meet_pyproject_s():
    pinned = {}
    for line in (DEBIAN / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pinned[name.lower()] = version
    for text in pyproject()["project"]["dependencies"]:
        wanted = Requirement(text)
        name = wanted.name.lower()
        assert name in pinned, f"{name} is not pinned in debian/requirements.txt"
        assert wanted.specifier.contains(pinned[name]), (text, pinned[name])


def test_the_unit_runs_what_the_package_puts_on_the_path():
    links = dict(line.split() for line in (DEBIAN / "vale.links").read_text().splitlines())
    on_path = {"/" + target: "/" + source for source, target in links.items()}
    unit = (ROOT / "systemd" / "valed.service").read_text()
    start = re.search(r"^ExecStart=(\S+)", unit, re.M)
    reload = re.search(r"^ExecReload=(\S+)", unit, re.M)
    assert start and reload
    assert on_path[start.group(1)] == "/opt/venvs/vale/bin/valed"
    assert on_path[reload.group(1)] == "/opt/venvs/vale/bin/valectl"
    assert "EnvironmentFile=-/etc/default/valed" in unit and "$VALED_OPTS" in unit
    for script, entry in pyproject()["project"]["scripts"].items():
        assert f"/opt/venvs/vale/bin/{script}" in on_path.values(), (script, entry)


def test_what_the_package_installs_is_in_the_tree():
    for line in (DEBIAN / "vale.install").read_text().splitlines():
        source, _ = line.split()
        assert (ROOT / source).is_file(), source
    for name in ("vale.manpages", "vale.docs"):
        for line in (DEBIAN / name).read_text().splitlines():
            assert (ROOT / line).is_file(), line
    assert (DEBIAN / "vale.sysusers").resolve() == (ROOT / "systemd" / "vale.conf")
