"""valectl: drive valed the way vale-ctl, ovs-vsctl and bridge are driven.

\b
  valectl [list]                   list every switch and port
  valectl attach vale0:eth1 [vale0:eth2 ...]   attach interfaces (a switch appears on first)
  valectl detach vale0:eth1
  valectl create tap0 --tap [--netns NS --address CIDR] [--switch vale0]
  valectl create tap0 --tap --persistent [--owner U] [--group G]    for a VM to open
  valectl create tap0 --tap [--persistent] --mac M --lock-mac      only M may send
  valectl create v0 --veth [--peer P] [--netns NS] [--address CIDR]
  valectl create vm1 --vhost-user [--mode server|client] [--path P]     for a QEMU VM
  valectl create app1 --memif [--path P] [--id N] [--secret S]         for a program
  valectl create vx0 --vxlan --vni 100 --remote ADDR [--local ADDR] [--dstport 4789]
  valectl remove tap0              delete what create made
  valectl reload                   bring back every port whose interface exists again
  valectl info vale0:eth1          settings, state, counters (of vale0: its thread's CPUs)
  valectl fdb vale0 [show|add MAC PORT|del MAC|flush]
  valectl stats [vale0[:PORT]]
  valectl set vale0[:PORT] key=value ...
  valectl top [vale0]              a live view: packets/s, bits/s, drops/s per port
  valectl capture vale0:PORT [-w FILE] [-c N] [--direction rx|tx|both]
  valectl mirror add vale0 --from P1[,P2] --to P3 [--direction rx|tx|both] | del | show
  valectl pktgen SOCKET [--size 60] [--rate PPS] [--seconds S]   send on a memif socket
  valectl pktcount SOCKET [--seconds S]                          count what arrives there
"""

from __future__ import annotations

import base64
import json
import select
import signal
import struct
import sys
import time
from typing import Any, BinaryIO, NoReturn

import click

from vale.cli import completion as complete
from vale.client import ClientError, call, open_stream, stream
from vale.settings import BY_NAME, describe, of_scope

from .pkttools import pktcount, pktgen


class Context:
    def __init__(self, socket: str | None) -> None:
        self.socket = socket

    def call(self, op: str, **args: Any) -> Any:
        try:
            return call(op, {k: v for k, v in args.items() if v is not None}, path=self.socket)
        except ClientError as exc:
            fail(exc.code, exc.message)


def fail(code: str, message: str) -> NoReturn:
    """One line on stderr, exit 1. A refusal says so first: the message names the role
    it needs."""
    prefix = "forbidden: " if code == "forbidden" else ""
    click.echo(f"valectl: {prefix}{message}", err=True)
    sys.exit(1)


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def table(rows: list[list[Any]], header: list[str]) -> None:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON")


@click.group(invoke_without_command=True, help=__doc__)
@click.option("--socket", envvar="VALE_SOCKET", default=None,
              help="valed's socket (default /run/vale/valed.sock, or $VALE_SOCKET)")
@json_option
@click.pass_context
def main(ctx: click.Context, socket: str | None, as_json: bool) -> None:
    ctx.obj = Context(socket)
    if as_json:             # `valectl --json stats` as `valectl stats --json`
        ctx.default_map = _json_everywhere(main)
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_ports, as_json=as_json)


def _json_everywhere(group: click.Group) -> dict[str, Any]:
    """A click default_map turning --json on for every command (and subcommand) that
    has it."""
    defaults: dict[str, Any] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            defaults[name] = _json_everywhere(command)
        elif any(p.name == "as_json" for p in command.params):
            defaults[name] = {"as_json": True}
    return defaults


@main.command("list")
@json_option
@click.pass_obj
def list_ports(obj: Context, as_json: bool) -> None:
    """List every switch and port."""
    ports = obj.call("list")
    if as_json:
        emit_json(ports)
        return
    table([[f"{p['switch']}:{p['port']}", "-" if p["index"] is None else p["index"], p["kind"],
            p["state"]] for p in ports], ["PORT", "INDEX", "KIND", "STATE"])


@main.command()
@click.argument("ports", nargs=-1, required=True, shell_complete=complete.new_ports)
@click.option("--no-learning", is_flag=True, help="learn no MAC addresses on this port")
@click.option("--no-flood", is_flag=True, help="send it no unknown unicast")
@click.option("--learn-limit", type=int, help=BY_NAME["learn_limit"].help)
@click.option("--no-offloads", is_flag=True,
              help="segment and checksum offloaded frames before they reach it")
@click.option("--rx-frames", type=int,
              help=f"{BY_NAME['rx_frames'].help} ({describe(BY_NAME['rx_frames'])})")
@click.option("--rx-frames-idle", type=int, help=BY_NAME["rx_frames_idle"].help)
@click.option("--force", is_flag=True, help="attach even the interface of the default route")
@json_option
@click.pass_obj
def attach(obj: Context, ports: tuple[str, ...], no_learning: bool, no_flood: bool,
           learn_limit: int | None, no_offloads: bool, rx_frames: int | None,
           rx_frames_idle: int | None, force: bool, as_json: bool) -> None:
    """Attach interface IF as PORT (vale0:IF); several PORTs: in one request, all or
    none."""
    settings = port_settings(no_learning, no_flood, learn_limit, no_offloads, rx_frames)
    if rx_frames_idle is not None:
        settings["rx_frames_idle"] = rx_frames_idle
    where = {"port": ports[0]} if len(ports) == 1 else {"ports": list(ports)}
    result = obj.call("attach", **where, settings=settings, force=force or None)
    if as_json:
        emit_json(result)


def port_settings(no_learning: bool, no_flood: bool, learn_limit: int | None,
                  no_offloads: bool, rx_frames: int | None) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if no_learning:
        settings["learning"] = False
    if no_flood:
        settings["flood"] = False
    if no_offloads:
        settings["offloads"] = False
    if learn_limit is not None:
        settings["learn_limit"] = learn_limit
    if rx_frames is not None:
        settings["rx_frames"] = rx_frames
    return settings


@main.command()
@click.argument("name")
@click.option("--tap", "kind", flag_value="tap", help="a TAP device valed holds open")
@click.option("--veth", "kind", flag_value="veth", help="a veth pair; the peer may go elsewhere")
@click.option("--vhost-user", "kind", flag_value="vhost_user",
              help="a VM's port over vhost-user (QEMU -netdev vhost-user)")
@click.option("--mode", type=click.Choice(["server", "client"]),
              help="with --vhost-user: valed listens (server, the default) or connects "
                   "to QEMU's socket (client: QEMU has server=on)")
@click.option("--vxlan", "kind", flag_value="vxlan",
              help="a kernel VXLAN device to another machine's switch (--vni, --remote)")
@click.option("--vni", type=int, help="with --vxlan: the VXLAN network identifier")
@click.option("--remote", help="with --vxlan: the far end's address")
@click.option("--local", help="with --vxlan: this end's address (default: the route's)")
@click.option("--dstport", type=int, help="with --vxlan: the UDP port (default 4789)")
@click.option("--memif", "kind", flag_value="memif",
              help="a program's port over memif (DPDK net_memif, libmemif, vale.app)")
@click.option("--path", help="with --vhost-user or --memif: the socket (default "
                             "/run/vale/vhost/NAME.sock or /run/vale/memif/NAME.sock)")
@click.option("--id", "iface_id", type=int,
              help="with --memif: the interface id the program gives (default 0)")
@click.option("--secret", help="with --memif: a secret the program must give (up to 23 bytes)")
@click.option("--persistent", is_flag=True,
              help="with --tap: a persistent TAP for a VM to open (QEMU -netdev tap)")
@click.option("--switch", default="vale0", show_default=True, help="the switch to attach to",
              shell_complete=complete.switches)
@click.option("--peer", help="with --veth: the peer's name (default NAME-p)")
@click.option("--netns", help="move the peer (or the TAP) into this network namespace")
@click.option("--address", help="an address for the peer (or the TAP), like 198.18.0.1/24")
@click.option("--owner", help="with --persistent, --vhost-user or --memif: the user that may "
                              "open it")
@click.option("--group", help="with --persistent, --vhost-user or --memif: the group that may "
                              "open it")
@click.option("--no-learning", is_flag=True)
@click.option("--no-flood", is_flag=True)
@click.option("--learn-limit", type=int)
@click.option("--no-offloads", is_flag=True)
@click.option("--mac", help="with --tap: the TAP's MAC (with --persistent: the VM's)")
@click.option("--lock-mac", is_flag=True,
              help="with --tap: the port takes frames from that MAC only (allowed_macs)")
@json_option
@click.pass_obj
def create(obj: Context, name: str, kind: str | None, mode: str | None, path: str | None,
           iface_id: int | None, secret: str | None, vni: int | None, remote: str | None,
           local: str | None, dstport: int | None, persistent: bool, switch: str,
           peer: str | None, netns: str | None, address: str | None, owner: str | None,
           group: str | None, no_learning: bool, no_flood: bool, learn_limit: int | None,
           no_offloads: bool, mac: str | None, lock_mac: bool, as_json: bool) -> None:
    """Create interface NAME, owned by valed, and attach it to a switch."""
    if kind is None:
        click.echo("valectl: say --tap, --veth, --vhost-user, --memif or --vxlan", err=True)
        sys.exit(2)
    if mode is not None and kind != "vhost_user":
        click.echo("valectl: --mode goes with --vhost-user", err=True)
        sys.exit(2)
    if path is not None and kind not in ("vhost_user", "memif"):
        click.echo("valectl: --path goes with --vhost-user or --memif", err=True)
        sys.exit(2)
    if (iface_id is not None or secret is not None) and kind != "memif":
        click.echo("valectl: --id and --secret go with --memif", err=True)
        sys.exit(2)
    if (vni, remote, local, dstport) != (None,) * 4 and kind != "vxlan":
        click.echo("valectl: --vni, --remote, --local and --dstport go with --vxlan", err=True)
        sys.exit(2)
    extra: dict[str, Any] = {}
    if kind == "vxlan":
        extra = {"vni": vni, "remote": remote, "local": local, "dstport": dstport}
    elif kind == "vhost_user":
        extra = {"mode": mode, "path": path}
    elif kind == "memif":
        extra = {"path": path, "id": iface_id, "secret": secret}
    if persistent:
        if kind != "tap":
            click.echo("valectl: --persistent goes with --tap", err=True)
            sys.exit(2)
        kind = "persistent_tap"
    result = obj.call("create", name=name, kind=kind, switch=switch, peer=peer, netns=netns,
                      address=address, owner=owner, group=group, mac=mac, lock_mac=lock_mac,
                      settings=port_settings(no_learning, no_flood, learn_limit, no_offloads,
                                             None), **extra)
    for warning in result.get("warnings", []) if isinstance(result, dict) else []:
        click.echo(f"valectl: warning: {warning}", err=True)
    if as_json:
        emit_json(result)


@main.command()
@click.argument("name", shell_complete=complete.created)
@click.pass_obj
def remove(obj: Context, name: str) -> None:
    """Delete interface NAME, which valectl create made."""
    obj.call("remove", name=name)


@main.command()
@click.pass_obj
def reload(obj: Context) -> None:
    """Bring back every configured port that is missing (systemd's ExecReload)."""
    result = obj.call("reload")
    for port in result["brought_up"]:
        click.echo(f"{port} is back")


@main.command()
@click.argument("port", shell_complete=complete.ports)
@click.pass_obj
def detach(obj: Context, port: str) -> None:
    """Detach PORT (vale0:IF); the interface is left as it was found."""
    obj.call("detach", port=port)


@main.command()
@click.argument("port", shell_complete=complete.targets)
@json_option
@click.pass_obj
def info(obj: Context, port: str, as_json: bool) -> None:
    """Settings, state and counters of PORT (vale0:IF); of a switch: its settings, the
    CPUs its forwarding thread runs on, its ports."""
    result = obj.call("info", port=port)
    if as_json:
        emit_json(result)
        return
    if "thread_cpus" in result:
        cpus = result["thread_cpus"]
        click.echo(f"{result['switch']}  thread on CPU(s) "
                   f"{'-' if cpus is None else ','.join(map(str, cpus))}  "
                   f"ports: {' '.join(result['ports']) or '-'}")
        for key, value in sorted(result["settings"].items()):
            click.echo(f"  {key}: {value}")
        return
    click.echo(f"{result['switch']}:{result['port']}  index {result['index']}  "
               f"{result['kind']}  {result['state']}")
    for key, value in sorted(result["settings"].items()):
        click.echo(f"  {key}: {value}")
    counters = result["counters"]
    if counters is None:
        return
    for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_ring_packets",
                "flood_packets"):
        click.echo(f"  {key}: {counters[key]}")
    for reason, count in counters["drops"].items():
        click.echo(f"  drops {reason}: {count}")


def fdb_show(obj: Context, switch: str, port: str | None, vlan: int | None,
             as_json: bool) -> None:
    """The entries as valed streams them, in table order, each page printed as it comes
    (a million entries start printing at once and hold no memory here)."""
    args = {k: v for k, v in {"switch": switch, "port": port, "vlan": vlan}.items()
            if v is not None}
    widths = (4, 17, 15, 7)         # VLAN, MAC, a port name (IFNAMSIZ), TYPE
    pages = stream("fdb_stream", args, path=obj.socket)
    try:
        page = next(pages, [])      # a refusal comes before anything is printed
        click.echo("[" if as_json else "  ".join(h.ljust(w) for h, w in zip(
            ("VLAN", "MAC", "PORT", "TYPE"), widths, strict=True)) + "  AGE(s)")
        shown = 0
        while page:
            if as_json:
                click.echo(",\n" * bool(shown) + ",\n".join(json.dumps(e) for e in page),
                           nl=False)
            else:
                click.echo("\n".join("  ".join(c.ljust(w) for c, w in zip(
                    (str(e["vlan"]), e["mac"], e["port"], "static" if e["static"]
                     else "learned"), widths, strict=True))
                    + "  " + ("-" if e["static"] else f"{e['age']:.1f}") for e in page))
            shown += len(page)
            page = next(pages, [])
    except ClientError as exc:
        fail(exc.code, exc.message)
    if as_json:
        click.echo("\n]")


@main.command()
@click.argument("switch", shell_complete=complete.switches)
@click.argument("action", default="show",
                type=click.Choice(["show", "add", "del", "flush"]))
@click.argument("params", nargs=-1)
@click.option("--port", help="only this port's entries (show, flush)",
              shell_complete=complete.switch_ports)
@click.option("--vlan", type=int, help="only this VLAN's entries (show); the entry's VLAN "
              "(add, del; default 0, untagged frames of ports without a VLAN mode)")
@click.option("--static", "statics", is_flag=True, help="flush static entries too")
@json_option
@click.pass_obj
def fdb(obj: Context, switch: str, action: str, params: tuple[str, ...], port: str | None,
        vlan: int | None, statics: bool, as_json: bool) -> None:
    """The MAC table: show | add MAC PORT | del MAC | flush [--port P] [--static];
    --vlan N for one VLAN's entries."""
    want = {"show": 0, "add": 2, "del": 1, "flush": 0}[action]
    if len(params) != want:
        usage = {"show": "show", "add": "add MAC PORT", "del": "del MAC", "flush": "flush"}
        click.echo(f"valectl: usage: valectl fdb {switch} {usage[action]}", err=True)
        sys.exit(2)
    if action == "show":
        fdb_show(obj, switch, port, vlan, as_json)
    elif action == "add":
        obj.call("fdb_add", switch=switch, mac=params[0], port=params[1], vlan=vlan or 0)
    elif action == "del":
        obj.call("fdb_del", switch=switch, mac=params[0], vlan=vlan or 0)
    else:
        result = obj.call("fdb_flush", switch=switch, port=port, statics=statics)
        if as_json:
            emit_json(result)
        else:
            click.echo(f"removed {result['removed']} entries")


@main.command()
@click.argument("target", required=False, shell_complete=complete.targets)
@json_option
@click.pass_obj
def stats(obj: Context, target: str | None, as_json: bool) -> None:
    """Per-port packets, bytes, floods and drops by reason; IN_KERNEL: of the packets
    received/sent, those the kernel fast path forwarded."""
    switches = obj.call("stats", target=target)
    if as_json:
        emit_json(switches)
        return
    rows = []
    for sw in switches:
        for name, c in sw["ports"].items():
            drops = c["drops"]
            rows.append([f"{sw['switch']}:{name}", c["rx_packets"], c["rx_bytes"],
                         c["tx_packets"], c["tx_bytes"],
                         f"{c['fastpath_rx_packets']}/{c['fastpath_tx_packets']}",
                         c["flood_packets"], sum(drops.values()),
                         ",".join(f"{r}={n}" for r, n in drops.items() if n) or "-"])
    table(rows, ["PORT", "RX_PKTS", "RX_BYTES", "TX_PKTS", "TX_BYTES", "IN_KERNEL", "FLOODED",
                 "DROPS", "BY_REASON"])
    for sw in switches:
        f = sw["fdb"]
        click.echo(f"{sw['switch']}: fdb {f['entries']}/{f['capacity']} entries, "
                   f"learned {f['learned']}, moved {f['moved']}, expired {f['expired']}, "
                   f"evicted {f['evicted']}; {sw['batches']} batches")


def settings_help() -> str:
    """`valectl set --help`: every setting, from vale.settings."""
    parts = ["Change settings: valectl set vale0 key=value ... for a switch, valectl set "
             "vale0:PORT key=value ... for a port. Each is checked first; a refused one "
             "changes nothing."]
    for scope, title in (("switch", "Switch settings"), ("attach", "Port settings")):
        width = max(map(len, of_scope(scope)))
        lines = [f"\b\n{title}:"]
        for s in of_scope(scope).values():
            only = " (valectl attach only)" if s.scope == "attach" else ""
            lines += [f"  {s.name.ljust(width)}  {describe(s)}{only}",
                      f"  {'':{width}}  {s.help}"]
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


@main.command("set", help=settings_help())
@click.argument("target", shell_complete=complete.targets)
@click.argument("assignments", nargs=-1, required=True, shell_complete=complete.assignments)
@json_option
@click.pass_obj
def set_(obj: Context, target: str, assignments: tuple[str, ...], as_json: bool) -> None:
    settings = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            click.echo(f"valectl: expected key=value, not {item!r}", err=True)
            sys.exit(2)
        settings[key] = value
    result = obj.call("set", target=target, settings=settings)
    if as_json:
        emit_json(result)


@main.command()
@click.argument("target", required=False, shell_complete=complete.targets)
@click.option("--interval", type=float, default=1.0, show_default=True, help="seconds")
@click.option("--count", type=int, default=0, help="refresh this many times, then stop")
@click.pass_obj
def top(obj: Context, target: str | None, interval: float, count: int) -> None:
    """A live per-port view, busiest first, like top. Ctrl-C to leave."""
    previous = rates_input(obj.call("stats", target=target))
    shown = 0
    try:
        while count == 0 or shown < count:
            time.sleep(interval)
            current = rates_input(obj.call("stats", target=target))
            rows = []
            for port, (t, values) in current.items():
                if port not in previous:
                    continue
                t0, old = previous[port]
                span = max(t - t0, 1e-9)
                rate = [(new - before) / span for new, before in zip(values, old, strict=True)]
                rows.append((rate[0] + rate[2], [port, f"{rate[0]:.0f}", f"{rate[1] * 8 / 1e6:.1f}",
                                                 f"{rate[2]:.0f}", f"{rate[3] * 8 / 1e6:.1f}",
                                                 f"{rate[4]:.0f}"]))
            rows.sort(key=lambda r: -r[0])
            if sys.stdout.isatty():
                click.clear()
            click.echo(time.strftime("vale top  %H:%M:%S") + f"  every {interval:g} s")
            table([r for _, r in rows], ["PORT", "RX pkt/s", "RX Mbit/s", "TX pkt/s",
                                         "TX Mbit/s", "DROPS/s"])
            previous = current
            shown += 1
    except KeyboardInterrupt:
        pass


def rates_input(switches: list[dict[str, Any]]) -> dict[str, tuple[float, list[int]]]:
    now = time.monotonic()
    return {f"{sw['switch']}:{name}": (now, [c["rx_packets"], c["rx_bytes"], c["tx_packets"],
                                            c["tx_bytes"], sum(c["drops"].values())])
            for sw in switches for name, c in sw["ports"].items()}


PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)   # ns stamps, Ethernet


@main.command()
@click.argument("port", shell_complete=complete.ports)
@click.option("-w", "--write", "path", default="-", help="pcap file to write (default stdout)")
@click.option("-c", "--count", type=int, default=0, help="stop after this many frames")
@click.option("--direction", type=click.Choice(["rx", "tx", "both"]), default="both",
              show_default=True, help="frames the port received, sent, or both")
@click.pass_obj
def capture(obj: Context, port: str, path: str, count: int, direction: str) -> None:
    """Write PORT's frames as pcap (tcpdump -r, tshark -r, Wireshark). Ctrl-C stops."""
    try:
        out: BinaryIO = sys.stdout.buffer if path == "-" else open(path, "wb")
    except OSError as exc:
        click.echo(f"valectl: cannot write {path}: {exc.strerror}", err=True)
        sys.exit(1)
    try:
        sock = open_stream("capture", {"port": port, "direction": direction}, path=obj.socket)
    except ClientError as exc:
        fail(exc.code, exc.message)
    lines = read_lines(sock, out)
    first = json.loads(next(lines, b"{}"))
    if not first.get("ok"):
        error = first.get("error", {})
        fail(error.get("code", "error"), error.get("message", "capture refused"))
    signal.signal(signal.SIGINT, lambda *_: stop(sock))
    written = 0
    try:
        out.write(PCAP_HEADER)
        out.flush()
        for line in lines:
            message = json.loads(line)
            if message.get("done"):
                click.echo(f"valectl: {written} frames captured, {message['lost']} lost",
                           err=True)
                return
            data = base64.b64decode(message["data"])
            stamp = message["t"]
            out.write(struct.pack("<IIII", stamp // 10**9, stamp % 10**9, len(data),
                                  message["len"]) + data)
            out.flush()
            written += 1
            if count and written >= count:
                stop(sock)
    except BrokenPipeError:             # the reader went (tcpdump -c, head)
        stop(sock)
    finally:
        if out is not sys.stdout.buffer:
            out.close()


def read_lines(sock: Any, out: BinaryIO) -> Any:
    """The daemon's lines; while none come, watch whether our reader went away (the
    other end of a pipe closing), so `| tcpdump -c N` ends even when traffic stops."""
    sock.settimeout(0.5)
    pending = b""
    asked_to_stop = False
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except TimeoutError:
            if not asked_to_stop and output_closed(out):
                stop(sock)
                asked_to_stop = True
            continue
        if not chunk:
            return
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from complete


def output_closed(out: BinaryIO) -> bool:
    try:
        poller = select.poll()
        poller.register(out.fileno(), select.POLLERR)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


def stop(sock: Any) -> None:
    """Ask the daemon to end the capture; it answers with the counts."""
    try:
        sock.sendall(b"stop\n")
    except OSError:
        pass


@main.group()
def mirror() -> None:
    """Copy ports' traffic to another port: add, del, show."""


@mirror.command("add")
@click.argument("switch", shell_complete=complete.switches)
@click.option("--from", "sources", required=True, help="P1[,P2...]: the mirrored ports",
              shell_complete=complete.switch_ports)
@click.option("--to", "target", required=True, help="the port that gets the copies",
              shell_complete=complete.switch_ports)
@click.option("--direction", type=click.Choice(["rx", "tx", "both"]), default="both",
              show_default=True)
@click.pass_obj
def mirror_add(obj: Context, switch: str, sources: str, target: str, direction: str) -> None:
    obj.call("mirror_add", switch=switch, to=target, direction=direction,
             **{"from": [p for p in sources.split(",") if p]})


@mirror.command("del")
@click.argument("switch", shell_complete=complete.switches)
@click.option("--from", "sources", help="P1[,P2...] (default: every mirror of the switch)",
              shell_complete=complete.switch_ports)
@click.pass_obj
def mirror_del(obj: Context, switch: str, sources: str | None) -> None:
    obj.call("mirror_del", switch=switch,
             **({"from": [p for p in sources.split(",") if p]} if sources else {}))


@mirror.command("show")
@click.argument("switch", shell_complete=complete.switches)
@json_option
@click.pass_obj
def mirror_show(obj: Context, switch: str, as_json: bool) -> None:
    rules = obj.call("mirror_show", switch=switch)
    if as_json:
        emit_json(rules)
        return
    table([[r["from"], r["to"], r["direction"]] for r in rules], ["FROM", "TO", "DIRECTION"])


# Programs on memif sockets, like netmap's pkt-gen: they talk to no daemon.
main.add_command(pktgen)
main.add_command(pktcount)


if __name__ == "__main__":
    main(prog_name="valectl")       # python -m: usage and completion as valectl's
