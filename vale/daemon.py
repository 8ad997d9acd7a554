"""valed: the vale daemon. Serves the JSON API on a Unix socket (asyncio on uvloop), runs
a forwarding thread per switch, keeps the configuration across restarts, follows
interfaces through netlink, talks to systemd, shuts down cleanly."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import grp
import json
import logging
import logging.handlers
import os
import resource
import signal
import socket
import stat
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vale import authz, sdnotify
from vale.api import Api, ApiError, error_reply, reply_error
from vale.api.protocol import request_args
from vale.api.service import audit
from vale.capture import CaptureBudget, CaptureHub, Subscriber, frame_message
from vale.kernel import remove_left_behind
from vale.limits import Limits, add_options, from_options
from vale.metrics import DEFAULT_ADDRESS, parse_address, serve_metrics
from vale.netlink import LinkWatcher
from vale.state import DEFAULT_STATE_DIR, StateFile
from vale.switch import Switch
from vale.tap import TUN_DEVICE

log = logging.getLogger("vale.daemon")

DEFAULT_SOCKET = "/run/vale/valed.sock"
MAX_REQUEST = 64 * 1024           # one request line; a longer one is refused
LISTEN_BACKLOG = 1024             # connections waiting to be accepted
MAX_CLIENTS = 256                 # connections served at once; more get "busy" and go
KEPT_FOR_ROOT = 8                 # of those, the last few only root may take
MAX_CLIENTS_PER_USER = 32         # connections one other uid may hold at once
IDLE_TIMEOUT = 30.0               # seconds a client may keep valed waiting
HOUSEKEEPING_SECONDS = 1.0
LOOP_PROBE_TICK = 0.1               # how often the switches are asked for their loop probes
KERNEL_SYNC_TICK = 0.25             # the fast paths' flags and ageing (their maps: journal_fd)
CAPTURE_WRITE_BUFFER = 256 * 1024   # a capture's socket buffer in valed, before it waits
STREAM_WRITE_BUFFER = 256 * 1024    # the same for a streamed answer (fdb_stream)
# valed's exit status when the kernel lacks what it needs (sysexits' EX_UNAVAILABLE:
# systemd shows status=69/UNAVAILABLE); the unit does not restart on it
# (RestartPreventExitStatus=): starting again would find the same kernel.
EXIT_UNAVAILABLE = 69


@dataclass(frozen=True)
class ClientLimits:
    """How many connections valed serves, and for how long it waits on one. Root (and
    valed's own uid) may use every place; other users share all but `kept_for_root`, at
    most `per_user` each, so no user can lock root's valectl out."""
    total: int = MAX_CLIENTS
    kept_for_root: int = KEPT_FOR_ROOT
    per_user: int = MAX_CLIENTS_PER_USER
    idle_timeout: float = IDLE_TIMEOUT      # waiting for a request or for a reply to go; 0: none


def peer_credentials(writer: asyncio.StreamWriter) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process that connected, as the kernel saw it at connect."""
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", creds)
    return pid, uid, gid


class Idle(Exception):
    """A client kept valed waiting longer than the idle timeout."""


class Daemon:
    def __init__(self, socket_path: str, state_dir: str, group: str | None = None,
                 metrics: str | None = DEFAULT_ADDRESS, grants: authz.Grants | None = None,
                 limits: ClientLimits | None = None, open_socket: bool = False,
                 resources: Limits | None = None) -> None:
        self.socket_path = socket_path
        self.group = group
        self.open_socket = open_socket      # 0666: the roles alone decide who does what
        self.metrics = metrics
        self.limits = limits or ClientLimits()
        self.resources = resources or Limits()      # switches, tables, rings, captures
        self.api = Api(StateFile(state_dir), on_switch_added=self._watch,
                       on_switch_removed=self._unwatch, grants=grants,
                       limits=self.resources)
        self.per_uid: Counter[int] = Counter()
        self.capture_budget = CaptureBudget(self.resources.capture_client_bytes,
                                            self.resources.capture_total_bytes)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.AbstractServer | None = None
        self.stopping = asyncio.Event()
        self.clients: set[asyncio.Task[Any]] = set()
        self.hubs: dict[str, CaptureHub] = {}

    # -- port failures, reported by the forwarding threads --------------------------------

    def _watch(self, sw: Switch) -> None:
        assert self.loop is not None
        self.loop.add_reader(sw.notify_fd, self._port_event, sw)
        self.loop.add_reader(sw.journal_fd, self._kernel_sync, sw)

    def _unwatch(self, sw: Switch) -> None:
        assert self.loop is not None
        self.loop.remove_reader(sw.notify_fd)
        self.loop.remove_reader(sw.journal_fd)

    def _kernel_sync(self, sw: Switch) -> None:
        """The switch's MAC table changed: its kernel fast path's maps follow now."""
        try:
            sw.kernel_sync()
        except (KeyError, ValueError, OSError):
            log.warning("kernel fast path of %s", sw.name, exc_info=True)

    def _port_event(self, sw: Switch) -> None:
        sw.clear_notify()
        for port in sw.ports():
            summary = self.api.port_summary(sw.name, port)
            if summary["state"] == "blocked":
                log.warning("%s:%s closes a loop (a loop probe of %s came back through it): "
                            "blocked for %gs", sw.name, port, sw.name,
                            sw.port_info(port)["blocked"])
            elif summary["state"] != "up":
                log.warning("%s:%s is %s: the switch goes on forwarding for the other ports",
                            sw.name, port, summary["state"])

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            try:
                self.api.housekeeping()
            except Exception:
                log.exception("housekeeping failed")

    async def _every_switch(self, tick: float, call: Callable[[Switch, float], Any],
                            what: str, level: int) -> None:
        """call(switch, time.monotonic()) for every switch every `tick` seconds: the loop
        guard's probes (each switch at its own loop_probe interval), the kernel fast
        paths kept in step with their switches. A failure is logged at `level` and the
        others go on (a port going away meanwhile)."""
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for sw in list(self.api.switches.values()):
                try:
                    call(sw, now)
                except (KeyError, ValueError, OSError):
                    log.log(level, "%s of %s", what, sw.name, exc_info=True)

    async def _watchdog(self, interval: float) -> None:
        """WATCHDOG=1 only while every forwarding thread makes progress: each loops at
        least once a second even when idle (its epoll wait times out)."""
        seen: dict[str, int] = {}
        while True:
            await asyncio.sleep(interval)
            progress = {name: sw.loops for name, sw in self.api.switches.items()}
            stuck = [name for name, loops in progress.items()
                     if name in seen and loops == seen[name]]
            seen = progress
            if stuck:
                log.error("forwarding thread of %s makes no progress: withholding the "
                          "watchdog ping", ", ".join(stuck))
            else:
                sdnotify.notify("WATCHDOG=1")

    # -- clients --------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      caller: authz.Caller) -> None:
        try:
            while True:
                try:
                    line = await self._wait(reader.readline())
                except (ValueError, asyncio.LimitOverrunError):
                    await self._send(writer, reply_error(
                        "too_large", f"a request may be at most {MAX_REQUEST} bytes"))
                    return
                except Idle:
                    writer.write(_line(reply_error(
                        "idle", f"no request for {self.limits.idle_timeout:g} s: "
                        "valed closes the connection")))
                    return
                if not line:
                    return
                try:
                    request = json.loads(line)
                except (ValueError, RecursionError):
                    reply = reply_error("bad_request", "a request is one line of JSON")
                else:
                    if isinstance(request, dict) and request.get("op") == "capture":
                        await self._capture(request, reader, writer, caller)
                        return
                    if isinstance(request, dict) and request.get("op") in self.api.streams:
                        await self._stream(request, writer, caller)
                        continue
                    try:
                        reply = self.api.handle(request, caller)
                    except Exception as exc:      # a bug: say so, keep serving
                        log.exception("request %r failed", request)
                        reply = reply_error("internal", f"internal error: {exc}")
                    for sw in list(self.api.switches.values()):
                        self._kernel_sync(sw)   # what the request changed, now

                await self._send(writer, reply)
        except (ConnectionError, Idle, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _wait(self, step: Any) -> Any:
        """Await a step that waits on the client, within the idle timeout."""
        if not self.limits.idle_timeout:
            return await step
        try:
            return await asyncio.wait_for(step, self.limits.idle_timeout)
        except TimeoutError:
            raise Idle from None

    async def _capture(self, request: dict[str, Any], reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter, caller: authz.Caller) -> None:
        """Stream a port's frames to this client, one JSON line each, until it sends a
        line (or goes); then one last line with the counts."""
        args: dict[str, Any] = {}
        rule = None
        try:
            args = request_args(request)
            rule = self.api.authorize(caller, "capture", args)
            sw, port, rx, tx = self.api.capture_target(args)
        except (ApiError, ValueError) as exc:
            reply = error_reply(exc) or reply_error("internal", str(exc))
            audit(caller, "capture", args, rule, reply)
            await self._send(writer, reply)
            return
        audit(caller, "capture", args, rule, {"ok": True})
        hub = self.hubs.get(sw.name)
        if hub is None or hub.sw is not sw:     # first capture, or the switch was made anew
            hub = self.hubs[sw.name] = CaptureHub(sw, self.capture_budget)
        sub = Subscriber(port, rx, tx)
        hub.add(sub)
        sent = 0
        ring_lost = 0
        stop = asyncio.ensure_future(reader.readline())
        try:
            await self._send(writer, {"ok": True, "result": {"capturing": args["port"]}})
            while not stop.done():
                ready = asyncio.ensure_future(sub.ready.wait())
                await asyncio.wait({stop, ready}, return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                sub.ready.clear()
                while sub.frames:
                    # Frames leave the budgeted queue only as the socket takes them: what
                    # valed holds for this client stays within the queue's bytes and this
                    # buffer, however slowly it reads.
                    writer.write(json.dumps(frame_message(*sub.pop(self.capture_budget)))
                                 .encode() + b"\n")
                    sent += 1
                    if writer.transport.get_write_buffer_size() > CAPTURE_WRITE_BUFFER:
                        await self._wait(writer.drain())
                await self._wait(writer.drain())
        finally:
            ring_lost = hub.remove(sub)
            stop.cancel()
        await self._send(writer, {"done": True, "frames": sent, "lost": sub.lost + ring_lost})

    async def _stream(self, request: dict[str, Any], writer: asyncio.StreamWriter,
                      caller: authz.Caller) -> None:
        """A streamed answer (fdb_stream): the reply, then a line {"page": [...]} for each
        page as it is read, then {"done": true, "count": n}. Between pages the other
        clients and the switches' housekeeping are served, and valed holds at most
        STREAM_WRITE_BUFFER of it however slowly the client reads. A switch that goes
        meanwhile ends it with "error" in the last line."""
        try:
            pages = self.api.open_stream(request, caller)
        except Exception as exc:
            reply = error_reply(exc)
            if reply is None:
                log.exception("request %r failed", request)
                reply = reply_error("internal", f"internal error: {exc}")
            await self._send(writer, reply)
            return
        await self._send(writer, {"ok": True, "result": {"stream": request["op"]}})
        count = 0
        end: dict[str, Any] = {"done": True}
        try:
            for page in pages:
                if page:
                    writer.write(_line({"page": page}))
                    count += len(page)
                if writer.transport.get_write_buffer_size() > STREAM_WRITE_BUFFER:
                    await self._wait(writer.drain())
                else:
                    await asyncio.sleep(0)
        except (KeyError, ValueError) as exc:       # the switch or port went meanwhile
            end["error"] = {"code": "gone", "message": str(exc)}
        end["count"] = count
        await self._send(writer, end)

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(_line(reply))
        await self._wait(writer.drain())

    def _track(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            pid, uid, gid = peer_credentials(writer)
        except OSError:
            writer.close()
            return
        busy = self._busy(uid)
        if busy is not None:
            # Descriptors are the daemon's: ports and TAPs need them more than idle clients.
            with contextlib.suppress(Exception):
                writer.write(_line(reply_error("busy", busy)))
            writer.close()
            return
        caller = self.api.grants.caller(uid, gid, pid)      # the groups, as of now
        task = asyncio.get_running_loop().create_task(self._client(reader, writer, caller))
        self.clients.add(task)
        self.per_uid[uid] += 1
        task.add_done_callback(functools.partial(self._gone, uid))

    def _gone(self, uid: int, task: asyncio.Task[Any]) -> None:
        self.clients.discard(task)
        self.per_uid[uid] -= 1
        if not self.per_uid[uid]:
            del self.per_uid[uid]

    def _busy(self, uid: int) -> str | None:
        """Why a new connection from `uid` is not served, or None."""
        limits = self.limits
        if uid in self.api.grants.root_uids:
            if len(self.clients) >= limits.total:
                return f"valed is serving {limits.total} clients; try again"
            return None
        if len(self.clients) >= limits.total - limits.kept_for_root:
            return (f"valed is serving {len(self.clients)} clients, all it serves besides "
                    "root's; try again")
        if self.per_uid[uid] >= limits.per_user:
            return (f"uid {uid} holds {limits.per_user} connections to valed, the most one "
                    "user may (valed --max-clients-per-user); close one")
        return None

    # -- life cycle -----------------------------------------------------------------------

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.stopping.set)
        watcher = LinkWatcher(self.loop, self.api.link_event)   # before restoring: miss nothing
        path = Path(self.socket_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            # Before restoring: a second valed must not attach (and forward) anything.
            if _socket_in_use(path):
                raise SystemExit(f"valed: another daemon is serving {path}")
            path.unlink()
        assert self.api.state is not None
        self.api.restore(self.api.state.load())
        try:
            for sw in self.api.switches.values():
                sw.kernel_restored()
            for switch in remove_left_behind({name for name, sw in self.api.switches.items()
                                              if sw.kernel_active}):
                log.warning("%s: the kernel fast path an earlier valed left is removed: the "
                            "switch is not configured, or has it off", switch)
        except OSError as exc:
            log.error("cannot remove what an earlier valed's kernel fast path left: %s", exc)
        # Metrics first: once valed answers on its socket, its metrics answer too.
        metrics_server = None
        if self.metrics is not None:
            try:
                metrics_server = await serve_metrics(self.api, self.metrics)
            except OSError as exc:          # metrics are worth a log line, not the switch
                log.error("cannot serve metrics on %s: %s; going on without them",
                          self.metrics, exc.strerror or exc)
        # Created 0660 (or 0666) from the start, not chmod-ed after anyone could connect.
        old_umask = os.umask(0o111 if self.open_socket else 0o117)
        try:
            self.server = await asyncio.start_unix_server(self._track, path, limit=MAX_REQUEST,
                                                          backlog=LISTEN_BACKLOG)
        finally:
            os.umask(old_umask)
        if self.group is not None:
            os.chown(path, -1, grp.getgrnam(self.group).gr_gid)
        log.info("valed serving %s", path)
        tasks = [self.loop.create_task(self._housekeeping()),
                 self.loop.create_task(self._every_switch(
                     LOOP_PROBE_TICK, Switch.send_loop_probes, "loop probes", logging.DEBUG)),
                 self.loop.create_task(self._every_switch(
                     KERNEL_SYNC_TICK, Switch.kernel_sync, "kernel fast path", logging.WARNING))]
        interval = sdnotify.watchdog_interval()
        if interval:
            tasks.append(self.loop.create_task(self._watchdog(interval)))
        sdnotify.notify("READY=1")
        try:
            await self.stopping.wait()
        finally:
            log.info("shutting down")
            sdnotify.notify("STOPPING=1")
            watcher.close()
            for task in tasks:
                task.cancel()
            if metrics_server is not None:
                metrics_server.close()
            self.server.close()
            for task in list(self.clients):
                task.cancel()
            self.api.shutdown()             # threads stopped, sockets closed, promisc undone
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _line(reply: dict[str, Any]) -> bytes:
    """A reply as the protocol sends it: one line of JSON."""
    return json.dumps(reply).encode() + b"\n"


def _socket_in_use(path: Path) -> bool:
    if not stat.S_ISSOCK(path.lstat().st_mode):
        raise SystemExit(f"valed: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:                     # a dependency; tolerate it missing in a pinch
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _ensure_stdio() -> None:
    """Started with stdin, stdout or stderr closed (as services and CI jobs can be), the
    next socket would take fd 0-2, and libuv refuses to close such an fd: point any closed
    one at /dev/null first."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def missing_kernel_features() -> str | None:
    """What valed needs of the kernel and this one lacks, as one line, or None: packet
    sockets (AF_PACKET, every interface port) and TUN (/dev/net/tun: TAP ports, the fast
    path's upcall devices). Only absence counts: EPERM (no CAP_NET_RAW) means the family is
    there. Probing loads af_packet and tun where they are modules."""
    missing = []
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            missing.append("AF_PACKET (packet sockets: a kernel without CONFIG_PACKET, or a "
                           f"sandbox withholding them): {exc.strerror}")
    try:
        os.close(os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
            missing.append(f"TUN ({TUN_DEVICE}: a kernel without CONFIG_TUN, or no such "
                           f"device here): {exc.strerror}")
    if not missing:
        return None
    return "valed cannot run without " + "; nor without ".join(missing)


def _raise_fd_limit() -> None:
    """Each interface port takes two sockets, each TAP its tun fd: raise the soft limit on
    open files to the hard one (systemd starts services at 1024 soft, 524288 hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)     # Linux: never unlimited
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def build_parser() -> argparse.ArgumentParser:
    """valed's options: its --help, and the source of valed(8) (vale.manpages)."""
    parser = argparse.ArgumentParser(prog="valed", description=__doc__)
    parser.add_argument("--socket", default=os.environ.get("VALE_SOCKET", DEFAULT_SOCKET),
                        help=f"control socket (default {DEFAULT_SOCKET}, or $VALE_SOCKET)")
    parser.add_argument("--state-dir", default=os.environ.get("STATE_DIRECTORY",
                                                              DEFAULT_STATE_DIR),
                        help=f"where the configuration is kept (default {DEFAULT_STATE_DIR}, "
                        "or systemd's $STATE_DIRECTORY)")
    parser.add_argument("--group", default=None,
                        help="the control socket's group (it is 0660); without the role "
                        "groups below, its members are operators")
    authz.add_options(parser)
    limits = parser.add_argument_group("clients")
    limits.add_argument("--max-clients-per-user", type=int, default=MAX_CLIENTS_PER_USER,
                        metavar="N", help="connections one user other than root may hold "
                        f"(default {MAX_CLIENTS_PER_USER}; of {MAX_CLIENTS} in all, "
                        f"{KEPT_FOR_ROOT} kept for root)")
    limits.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT, metavar="S",
                        help="close a client that keeps valed waiting this many seconds "
                        f"for a request or for reading a reply (default {IDLE_TIMEOUT:g}; "
                        "0: never)")
    parser.add_argument("--metrics", default=DEFAULT_ADDRESS, metavar="HOST:PORT",
                        help=f"serve Prometheus metrics at http://HOST:PORT/metrics (default "
                        f"{DEFAULT_ADDRESS})")
    parser.add_argument("--no-metrics", action="store_true", help="serve no metrics")
    parser.add_argument("--foreground", action="store_true",
                        help="stay in the foreground and log to stderr (what systemd and "
                        "tests use); otherwise valed detaches and logs to syslog")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"],
                        help="the least important messages logged (default info)")
    add_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    _ensure_stdio()
    _raise_fd_limit()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        resources = from_options(args)
    except ValueError as exc:
        parser.error(str(exc))
    level = getattr(logging, args.log_level.upper())
    missing = missing_kernel_features()
    if args.foreground and stderr_is_journal():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JournalFormatter("%(levelname)s %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
    elif args.foreground:
        logging.basicConfig(level=level, stream=sys.stderr,
                            format="%(asctime)s valed %(levelname)s %(message)s")
    else:
        if missing:                 # said where the caller sees it, before detaching
            parser.exit(EXIT_UNAVAILABLE, f"valed: {missing}\n")
        _detach()
        handler = logging.handlers.SysLogHandler(address="/dev/log") \
            if os.path.exists("/dev/log") else logging.NullHandler()
        handler.setFormatter(logging.Formatter("valed[%(process)d]: %(message)s"))
        logging.basicConfig(level=level, handlers=[handler])
    if missing:
        log.error("%s", missing)    # one line, and no restart (EXIT_UNAVAILABLE)
        return EXIT_UNAVAILABLE
    if os.geteuid() != 0:
        log.warning("not running as root: attaching interfaces needs CAP_NET_RAW and "
                    "CAP_NET_ADMIN")
    if args.group is not None:
        try:
            grp.getgrnam(args.group)
        except KeyError:
            parser.error(f"no group {args.group!r}")
    if args.max_clients_per_user < 1:
        parser.error("--max-clients-per-user takes 1 or more")
    if not 0 <= args.idle_timeout <= 86400:
        parser.error("--idle-timeout takes 0 to 86400 seconds")
    try:
        grants, open_socket = authz.from_options(args)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.no_metrics:
        try:
            parse_address(args.metrics)
        except ValueError as exc:
            parser.error(str(exc))
    _run(Daemon(args.socket, args.state_dir, args.group,
                None if args.no_metrics else args.metrics, grants,
                ClientLimits(per_user=args.max_clients_per_user,
                             idle_timeout=args.idle_timeout), open_socket, resources).run())
    return 0


def stderr_is_journal() -> bool:
    """Whether stderr is systemd's journal stream (it sets JOURNAL_STREAM to the stream's
    device:inode), as under the unit."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


JOURNAL_PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4,
                      logging.INFO: 6, logging.DEBUG: 7}


class JournalFormatter(logging.Formatter):
    """Each line with the priority journald reads from a stream (<3> an error, <4> a
    warning...), so that `journalctl -p err -u valed` shows valed's errors; journald
    stamps the time itself."""

    def format(self, record: logging.LogRecord) -> str:
        priority = JOURNAL_PRIORITIES.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}"
                         for line in super().format(record).splitlines())


def _detach() -> None:
    """The classic double fork: no controlling terminal, not a process-group leader."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)


if __name__ == "__main__":
    sys.exit(main())
