"""valed(8) and valectl(8): written by vale.manpages from the parser and the click group
that print --help, so the pages in man/ must be what it writes now (`make man` rewrites
them), groff must take them without a warning, and every option and command --help
shows must be on them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import click
import pytest

from tests.conftest import ROOT
from vale import manpages

MAN = ROOT / "man"
needs_groff = pytest.mark.skipif(shutil.which("groff") is None,
                                 reason="needs groff (Debian: groff-base)")


def render(name: str) -> str:
    """The page as man shows it, in plain ASCII, one long line per paragraph."""
    result = subprocess.run(["groff", "-ww", "-man", "-Tascii", "-rLL=1000n", "-P-cbou",
                             str(MAN / name)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stderr, result.stderr
    return result.stdout


@pytest.mark.parametrize("name", sorted(manpages.PAGES))
def test_the_man_pages_are_what_the_help_source_writes_now(name):
    assert (MAN / name).read_text() == manpages.PAGES[name](), "run make man"


def test_check_fails_on_a_page_that_drifted(tmp_path):
    manpages.main([str(tmp_path)])
    assert manpages.main(["--check", str(tmp_path)]) == 0
    page = tmp_path / "valectl.8"
    page.write_text(page.read_text().replace(r"\-\-no\-flood", r"\-\-no\-floods"))
    result = subprocess.run([sys.executable, "-m", "vale.manpages", "--check", str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 1 and "valectl.8" in result.stderr


@needs_groff
def test_valed_8_has_every_option_of_valed_help():
    from vale.daemon import build_parser
    text = render("valed.8")
    help_text = build_parser().format_help()
    for action in build_parser()._actions:
        for option in action.option_strings:
            assert option in help_text and option in text, option
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "FILES",
                    "SEE ALSO"):
        assert f"\n{section}\n" in text, section
    assert "69 the kernel lacks packet sockets (AF_PACKET) or TUN" in " ".join(text.split())


def commands(group: click.Group, ctx: click.Context, prefix: str = "valectl"):
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        sub = click.Context(command, info_name=name, parent=ctx)
        yield f"{prefix} {name}", command, sub
        if isinstance(command, click.Group):
            yield from commands(command, sub, f"{prefix} {name}")


@needs_groff
def test_valectl_8_has_every_command_and_option_of_valectl_help():
    from vale.cli.valectl import main
    text = render("valectl.8")
    ctx = click.Context(main, info_name="valectl")
    found = list(commands(main, ctx))
    assert {path for path, _, _ in found} >= {
        "valectl attach", "valectl detach", "valectl create", "valectl remove",
        "valectl set", "valectl fdb", "valectl stats", "valectl capture",
        "valectl mirror add"}
    for path, command, sub in found:
        assert f"\n   {path} [OPTIONS]" in text, path
        help_text = command.get_help(sub)
        for param in command.params:
            for option in getattr(param, "opts", []) if isinstance(param, click.Option) else []:
                assert option in help_text and option in text, (path, option)
        if command.help:
            first = " ".join(command.help.split("\n\n")[0].split())
            assert first in " ".join(text.split()), path


@needs_groff
def test_man_finds_and_formats_the_pages():
    if shutil.which("man") is None:
        pytest.skip("needs man (Debian: man-db)")
    for name in manpages.PAGES:
        result = subprocess.run(["man", "-l", str(MAN / name)], capture_output=True,
                                text=True, timeout=30, env={"MANWIDTH": "80",
                                                            "PATH": "/usr/bin:/bin"})
        assert result.returncode == 0 and name.split(".")[0].upper() in result.stdout
