"""Shell completion for valectl, through click's own (`_VALECTL_COMPLETE=bash_source
valectl`, or zsh_source): commands and options as click knows them, setting names and
values from vale.settings, and switch and port names asked of the running valed (a valed
that does not answer within a second completes nothing, and says nothing).

bash splits words at ':' and '=' (COMP_WORDBREAKS), so `vale0:p<TAB>` would reach click
as three words; the bash script here hands click the line as typed instead and gives bash
back only what follows the last ':' or '=', which is the word bash replaces.
"""

from __future__ import annotations

import os
from typing import Any

import click
from click.shell_completion import (
    BashComplete,
    CompletionItem,
    add_completion_class,
    split_arg_string,
)

from vale.client import ClientError, call
from vale.settings import BY_NAME, Choice, Flag, of_scope

ASK_SECONDS = 1.0


def _ports(ctx: click.Context) -> list[dict[str, Any]]:
    """valed's ports (list), or none when it cannot be asked."""
    socket = ctx.find_root().params.get("socket")
    try:
        result = call("list", path=socket, timeout=ASK_SECONDS)
    except (ClientError, OSError, ValueError):
        return []
    return result if isinstance(result, list) else []


def switches(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    names = sorted({p["switch"] for p in _ports(ctx)})
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


def ports(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """SWITCH:PORT of every port, with its kind and state."""
    return [CompletionItem(f"{p['switch']}:{p['port']}", help=f"{p['kind']} {p['state']}")
            for p in _ports(ctx) if f"{p['switch']}:{p['port']}".startswith(incomplete)]


def targets(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """A switch, or one of its ports (stats, info, set)."""
    return switches(ctx, param, incomplete) + ports(ctx, param, incomplete)


def new_ports(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """attach: SWITCH:IF for this host's interfaces not on a switch yet (a switch that
    does not exist yet may be typed: it appears on the first attach)."""
    attached = {p["port"] for p in _ports(ctx)}
    known = sorted({p["switch"] for p in _ports(ctx)}) or ["vale0"]
    switch, colon, _ = incomplete.partition(":")
    if not colon:
        return [CompletionItem(f"{name}:") for name in known if name.startswith(incomplete)]
    try:
        interfaces = sorted(os.listdir("/sys/class/net"))
    except OSError:
        interfaces = []
    return [CompletionItem(f"{switch}:{name}") for name in interfaces
            if name not in attached and name != "lo" and f"{switch}:{name}".startswith(incomplete)]


def created(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """remove: the interfaces valed made (valectl create)."""
    return [CompletionItem(p["port"], help=p["kind"]) for p in _ports(ctx)
            if p["kind"] != "interface" and p["port"].startswith(incomplete)]


def switch_ports(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """mirror --from, --to: the ports of the switch named before."""
    # an option still waiting for its value leaves the arguments unparsed, in ctx.args
    switch = ctx.params.get("switch") or (ctx.args[0] if ctx.args else None)
    done, comma, last = incomplete.rpartition(",")
    prefix = done + comma
    return [CompletionItem(prefix + p["port"]) for p in _ports(ctx)
            if p["switch"] == switch and p["port"].startswith(last)]


def setting_values(name: str) -> tuple[str, ...]:
    kind = BY_NAME[name].kind
    if isinstance(kind, Flag):
        return ("on", "off")
    if isinstance(kind, Choice):
        return kind.values
    return ()


def assignments(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """set: key= of the settings the target takes (a switch's, or a port's), then the
    values of those with a few."""
    target = ctx.params.get("target") or ""
    known = of_scope("port" if ":" in target else "switch")
    key, equals, value = incomplete.partition("=")
    if not equals:
        given = {item.partition("=")[0] for item in ctx.params.get("assignments") or ()}
        return [CompletionItem(f"{name}=", help=setting.help) for name, setting in known.items()
                if name.startswith(key) and name not in given]
    if key not in known:
        return []
    return [CompletionItem(f"{key}={v}") for v in setting_values(key) if v.startswith(value)]


class ValectlBash(BashComplete):
    """click's bash completion, given the line as typed (COMP_LINE) rather than bash's
    words, which ':' and '=' split."""

    source_template = r"""
%(complete_func)s() {
    local IFS=$'\n'
    local line="${COMP_LINE:0:$COMP_POINT}"
    local word="${line##*[[:space:]]}"
    # bash replaces only what follows the word's last ':' or '=' where those split words
    # (COMP_WORDBREAKS, by default): each completion loses what comes before
    local breaks="${COMP_WORDBREAKS//[^:=]/}"
    local before=""
    [[ -n $breaks ]] && before="${word%%"${word##*[$breaks]}"}"
    local response
    response=$(env _VALE_COMP_LINE="$line" %(complete_var)s=bash_complete $1)
    local completion type value
    for completion in $response; do
        IFS=',' read -r type value <<< "$completion"
        if [[ $type == dir ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == file ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == plain ]]; then
            COMPREPLY+=("${value#"$before"}")
            [[ $value == *[:=] ]] && compopt -o nospace
        fi
    done
    return 0
}

%(complete_func)s_setup() {
    complete -o nosort -F %(complete_func)s %(prog_name)s
}

%(complete_func)s_setup;
"""

    def get_completion_args(self) -> tuple[list[str], str]:
        line = os.environ.get("_VALE_COMP_LINE")
        if line is None:                    # a script of click's own: its words
            return super().get_completion_args()
        args = split_arg_string(line)[1:]
        incomplete = args.pop() if args and line and not line[-1].isspace() else ""
        return args, incomplete


add_completion_class(ValectlBash, "bash")
