"""valectl's shell completion, in the real shells with the scripts valectl prints
(`_VALECTL_COMPLETE=bash_source valectl`, zsh_source): commands, options, setting names
and values, and switch and port names from a running valed (memif ports: no root needed).
bash runs its completion function as it would on <TAB> (COMP_LINE, COMP_POINT,
COMP_WORDBREAKS as bash sets them); zsh runs click's script with the completion system's
_describe and compadd standing in, printing what they were given."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

needs_zsh = pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh (Debian: zsh)")


@pytest.fixture(scope="module")
def path(tmp_path_factory) -> str:
    """A PATH whose valectl is this tree's (the scripts call valectl by name)."""
    bin_dir = tmp_path_factory.mktemp("bin")
    wrapper = bin_dir / "valectl"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m vale.cli.valectl "$@"\n')
    wrapper.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


def environment(path: str, socket: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VALE_", "_VALE"))}
    env.update(PATH=path, PYTHONPATH=str(ROOT),
               VALE_SOCKET=socket or "/nonexistent/valed.sock")
    return env


BASH = r"""
set -u
compopt() { echo "compopt $1 $2" >&2; }   # outside a real <TAB>, only note it
eval "$(_VALECTL_COMPLETE=bash_source valectl)"
COMP_WORDBREAKS=$' \t\n"\'><=;|&(:'      # bash's default
for line in "$@"; do
    COMP_LINE=$line COMP_POINT=${#line} COMPREPLY=()
    _valectl_completion valectl
    printf '%s\n' "${COMPREPLY[*]:-}"
done
"""


def bash(path: str, *lines: str, socket: str | None = None) -> list[list[str]]:
    """What bash would offer after each line: COMPREPLY, the words bash puts in place
    of what follows the last space, ':' or '='."""
    result = subprocess.run(["bash", "-c", BASH,
                             "bash", *lines], capture_output=True, text=True, timeout=60,
                            env=environment(path, socket), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "valectl:" not in result.stderr, result.stderr
    return [line.split() for line in result.stdout.splitlines()]


ZSH = r"""
compdef() { : }
_describe() { print -r -- "described ${(@P)3}" }    # -V unsorted ARRAY -U
compadd() { print -r -- "added ${(@P)5}" }          # -U -V unsorted -a ARRAY
source <(_VALECTL_COMPLETE=zsh_source valectl)
words=(${(z)1})
CURRENT=$(( ${#words} + 1 ))
[[ $1 == *' ' ]] || CURRENT=${#words}
(( CURRENT > ${#words} )) && words+=('')
_valectl_completion
"""


def zsh(path: str, line: str, socket: str | None = None) -> list[str]:
    result = subprocess.run(["zsh", "-f", "-c", ZSH, "zsh", line], capture_output=True,
                            text=True, timeout=60, env=environment(path, socket), cwd=ROOT)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return result.stdout.splitlines()


# -- without valed --------------------------------------------------------------------------

def test_bash_completes_commands_options_and_settings(path):
    assert bash(path, "valectl at", "valectl mirror ", "valectl attach --no-",
                "valectl set vale0 age", "valectl set vale0:p1 lea",
                "valectl set vale0:p1 learning=", "valectl set vale0 lookup=h",
                "valectl set vale0 ageing=30 age", "valectl capture vale0:p1 --direction ") == [
        ["attach"], ["add", "del", "show"], ["--no-learning", "--no-flood", "--no-offloads"],
        ["ageing="], ["learning=", "learn_limit="], ["on", "off"], ["hub"], [],
        ["rx", "tx", "both"]]


def test_bash_leaves_no_space_after_a_setting_name(path):
    """`ageing=` is followed by its value, not a space: the script asks bash for
    nospace (compopt, noted on stderr here)."""
    result = subprocess.run(["bash", "-c", BASH, "bash", "valectl set vale0 agei"],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env=environment(path, None))
    assert result.stdout.split() == ["ageing="]
    assert "compopt -o nospace" in result.stderr


def test_without_valed_names_complete_to_nothing_and_silently(path):
    assert bash(path, "valectl detach ", "valectl info v", "valectl fdb ") == [[], [], []]


# -- from a running valed -------------------------------------------------------------------

@pytest.fixture
def two_switches(valed, tmp_path):
    for name, switch in (("app1", "vale0"), ("app2", "vale0"), ("app3", "vale1")):
        valed.ctl("create", name, "--memif", "--switch", switch, "--path",
                  str(tmp_path / f"{name}.sock"))
    return valed


def test_bash_completes_switches_and_ports_from_valed(path, two_switches):
    sock = two_switches.socket
    assert bash(path, "valectl detach ", "valectl detach vale0:", "valectl detach vale0:app",
                "valectl info vale", "valectl fdb v", "valectl remove app",
                "valectl mirror add vale0 --from app1,", "valectl set vale1:app3 sti",
                socket=sock) == [
        ["vale0:app1", "vale0:app2", "vale1:app3"], ["app1", "app2"], ["app1", "app2"],
        ["vale0", "vale1", "vale0:app1", "vale0:app2", "vale1:app3"], ["vale0", "vale1"],
        ["app1", "app2", "app3"], ["app1,app1", "app1,app2"], ["sticky="]]


def test_the_socket_given_on_the_line_is_the_one_asked(path, two_switches):
    line = f"valectl --socket {two_switches.socket} stats vale1:"
    assert bash(path, line) == [["app3"]]           # VALE_SOCKET points nowhere


@needs_zsh
def test_zsh_completes_commands_settings_and_ports_from_valed(path, two_switches):
    sock = two_switches.socket
    # (click's short help: the first sentence, cut at 45 characters)
    assert zsh(path, "valectl det") == ["described detach:Detach PORT (vale0:IF); the "
                                        "interface is..."]
    assert zsh(path, "valectl set vale0 lookup=") == ["added lookup=learning lookup=hub"]
    # a colon in a value is escaped for _describe, which splits value from description
    assert zsh(path, "valectl detach vale", socket=sock) == [
        r"described vale0\:app1:memif up vale0\:app2:memif up vale1\:app3:memif up"]
    assert zsh(path, "valectl fdb ", socket=sock) == ["added vale0 vale1"]
