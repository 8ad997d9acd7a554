"""valed(8) and valectl(8), written from the objects that print their --help: valed's
argparse parser (vale.daemon.build_parser) and valectl's click group (vale.cli.valectl).
An option or a command reaches the man pages the way it reaches --help, and a test
(tests/test_manpages.py) fails while the pages in man/ differ from what this writes.

    python -m vale.manpages man/            write man/valed.8 and man/valectl.8 (make man)
    python -m vale.manpages --check man/    exit 1, naming them, if they are not current
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import click

SECTION = "8"
MANUAL = "vale"


def version() -> str:
    try:
        return metadata.version("vale")
    except metadata.PackageNotFoundError:      # a tree run in place, never installed
        return "unknown"


def roff(text: str) -> str:
    """Text as troff prints it: backslashes and hyphens escaped (a hyphen typed as \\- is
    the ASCII one, so options copied from the page work), and no line taken for a
    request (. or ' first)."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def bold(text: str) -> str:
    return f"\\fB{roff(text)}\\fR"


def paragraphs(text: str) -> Iterator[str]:
    """click's help text as man paragraphs: blank lines part them; one whose first line
    is \\b is kept as written (no filling), as click's --help keeps it."""
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if lines[0].strip() == "\b":
            yield ".PP\n.nf\n" + roff("\n".join(lines[1:])) + "\n.fi"
        elif block.strip():
            yield ".PP\n" + roff(" ".join(line.strip() for line in lines))


def header(name: str, summary: str) -> list[str]:
    return [f'.\\" Written by vale.manpages from {name} --help\'s source; do not edit.',
            f'.TH {name.upper()} {SECTION} "" "vale {version()}" "{MANUAL}"',
            ".SH NAME", f"{name} \\- {roff(summary)}"]


def tagged(term: str, text: str) -> list[str]:
    return [".TP", term, roff(text)] if text else [".TP", term, ""]


def static(sections: list[tuple[str, list[tuple[str, str]] | str]]) -> list[str]:
    """Sections --help does not have (files, environment, exit status...): a title and
    either a paragraph or (term, text) pairs."""
    out: list[str] = []
    for title, body in sections:
        out.append(f".SH {title}")
        if isinstance(body, str):
            out.append(roff(body))
        else:
            for term, text in body:
                out += tagged(bold(term), text)
    return out


# -- valed: argparse ---------------------------------------------------------------------

def valed_page() -> str:
    from vale.daemon import EXIT_UNAVAILABLE, build_parser
    parser = build_parser()
    formatter = parser._get_formatter()         # what --help uses for "--opt METAVAR"
    usage = " ".join(parser.format_usage().removeprefix("usage: ").split())
    description = parser.description or ""
    out = header("valed", "the vale switch daemon")
    out += [".SH SYNOPSIS", roff(usage), ".SH DESCRIPTION"]
    description = description.removeprefix("valed: ")
    out += list(paragraphs(description[:1].upper() + description[1:]))
    out.append(".SH OPTIONS")
    for group in parser._action_groups:
        if not group._group_actions:
            continue
        if group.title not in ("options", "optional arguments"):
            # "resources: what any client may ...": the first words as the subsection's
            # title, the rest as its first paragraph
            whole = group.title or ""
            title, _, rest = whole.partition(";" if ";" in whole else ":")
            out += [f'.SS "{roff(title.strip().capitalize())}"']
            for text in (rest.strip(), group.description or ""):
                if text:
                    out += list(paragraphs(text[0].upper() + text[1:]))
        for action in group._group_actions:
            if action.help == argparse.SUPPRESS:
                continue
            invocation = formatter._format_action_invocation(action)
            text = formatter._expand_help(action) if action.help else ""
            out += tagged(bold(invocation), text)
    out += static([
        ("EXIT STATUS", [
            ("0", "stopped (SIGTERM or SIGINT) after a clean shutdown"),
            ("1", "another valed serves the socket, or a file in the way of it"),
            ("2", "a bad option (said on stderr)"),
            (str(EXIT_UNAVAILABLE), "the kernel lacks packet sockets (AF_PACKET) or TUN "
             "(/dev/net/tun): one log line says which; valed.service does not restart it"),
        ]),
        ("ENVIRONMENT", [
            ("VALE_SOCKET", "the control socket, unless --socket is given"),
            ("STATE_DIRECTORY", "set by systemd (StateDirectory=): where the configuration "
             "is kept, unless --state-dir is given"),
            ("NOTIFY_SOCKET, WATCHDOG_USEC, JOURNAL_STREAM", "set by systemd: valed says "
             "READY=1 once it serves, pings the watchdog while its forwarding threads make "
             "progress, and gives each log line its priority"),
        ]),
        ("FILES", [
            ("/run/vale/valed.sock", "the control socket valectl talks to (0660, the "
             "--group)"),
            ("/var/lib/vale/state.json", "the configuration, saved on every change and "
             "restored at start"),
            ("/etc/default/valed", "VALED_OPTS: further options for valed.service (the "
             "Debian package)"),
            ("http://127.0.0.1:9466/metrics", "Prometheus metrics (--metrics)"),
        ]),
        ("SEE ALSO", "valectl(8), systemctl(1), journalctl(1); /usr/share/doc/vale/ "
         "(operations.md, metrics.md, security.md)"),
    ])
    return "\n".join(out) + "\n"


# -- valectl: click ----------------------------------------------------------------------

def click_options(command: click.Command, ctx: click.Context) -> list[str]:
    out: list[str] = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option):    # arguments are in the usage line
            continue
        record = param.get_help_record(ctx)
        if record is not None:
            out += tagged(bold(record[0]), record[1])
    return out


def click_commands(group: click.Group, ctx: click.Context) -> Iterator[list[str]]:
    """Each subcommand (and theirs): its usage as a subsection, its help, its options."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        sub = click.Context(command, info_name=name, parent=ctx)
        usage = " ".join([sub.command_path, *command.collect_usage_pieces(sub)])
        section = [f'.SS "{roff(usage)}"']
        section += list(paragraphs(command.help or command.short_help or ""))
        options = click_options(command, sub)
        if options:
            section += [".RS", ".PP", "Options:", *options, ".RE"]
        yield section
        if isinstance(command, click.Group):
            yield from click_commands(command, sub)


def valectl_page() -> str:
    from vale.cli.valectl import main as valectl
    ctx = click.Context(valectl, info_name="valectl")
    usage = " ".join(["valectl", *valectl.collect_usage_pieces(ctx)])
    help_text = valectl.help or ""
    first, _, rest = help_text.partition("\n\n")
    out = header("valectl", first.removeprefix("valectl: ").rstrip("."))
    out += [".SH SYNOPSIS", roff(usage), ".SH DESCRIPTION", *paragraphs(rest)]
    out += [".SH OPTIONS", *click_options(valectl, ctx)]
    out.append(".SH COMMANDS")
    for section in click_commands(valectl, ctx):
        out += section
    out += static([
        ("EXIT STATUS", [
            ("0", "done"),
            ("1", "valed refused or failed the request, or cannot be reached: one line on "
             "stderr says why (valed is not running, permission denied, forbidden: the role "
             "it needs, no such port...)"),
            ("2", "a bad command line"),
        ]),
        ("ENVIRONMENT", [("VALE_SOCKET", "valed's socket, unless --socket is given")]),
        ("FILES", [("/run/vale/valed.sock", "valed's control socket: members of group vale "
                    "may use it")]),
        ("COMPLETION", "bash and zsh complete commands, options, settings and, from the "
         "running valed, switch and port names (the Debian package installs the scripts; "
         "elsewhere: eval \"$(_VALECTL_COMPLETE=bash_source valectl)\", or zsh_source)."),
        ("SEE ALSO", "valed(8); /usr/share/doc/vale/ (operations.md, metrics.md, "
         "security.md)"),
    ])
    return "\n".join(out) + "\n"


PAGES = {"valed.8": valed_page, "valectl.8": valectl_page}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vale.manpages", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the pages there are not current")
    args = parser.parse_args(argv)
    stale = []
    for name, page in PAGES.items():
        path = args.directory / name
        text = page()
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            args.directory.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"not current: {', '.join(stale)} (make man)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
