"""The API as the daemon serves it: requests in, replies out, as plain dicts (JSON on the
wire, vale.api.protocol). Every request is checked before anything changes; a failed
request changes neither the configuration nor the saved state, and a change is saved
before it is answered."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

from vale import authz
from vale.api.fdb import FdbOps
from vale.api.interfaces import InterfaceOps
from vale.api.mirrors import MirrorOps
from vale.api.ports import PortOps
from vale.api.protocol import API_VERSION, error_reply, parse_request, reply_error
from vale.api.topology import Topology
from vale.limits import Limits
from vale.state import State, StateFile
from vale.switch import Switch

log = logging.getLogger("vale.api")


class Api:
    """Desired configuration, live switches, and the operations on both."""

    def __init__(self, state: StateFile | None = None,
                 on_switch_added: Callable[[Switch], None] | None = None,
                 on_switch_removed: Callable[[Switch], None] | None = None,
                 grants: authz.Grants | None = None, limits: Limits | None = None) -> None:
        self.state = state
        self.grants = grants or authz.Grants()
        self.topo = Topology(on_switch_added, on_switch_removed, limits)
        self.ports = PortOps(self.topo)
        self.interfaces = InterfaceOps(self.topo)
        self.mirrors = MirrorOps(self.topo)
        self._unsaved = ""              # why the last save failed; "" when saved
        fdb = FdbOps(self.topo)
        self._ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "version": self.op_version, "reload": self.op_reload, **self.ports.ops(),
            **self.interfaces.ops(), **fdb.ops(), **self.mirrors.ops()}
        # Those answered with a stream of pages (the daemon sends them as they come).
        self.streams: dict[str, Callable[[dict[str, Any]], Iterator[Any]]] = fdb.streams()
        # What the daemon and the metrics ask for.
        self.port_summary = self.topo.port_summary
        self.link_event = self.topo.link_event
        self.capture_target = self.mirrors.capture_target
        self.op_list = self.ports.op_list

    @property
    def desired(self) -> State:
        return self.topo.desired

    @property
    def switches(self) -> dict[str, Switch]:
        return self.topo.switches

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, request: Any, caller: authz.Caller | None = None) -> dict[str, Any]:
        """Answer a request from `caller` (None: valed itself, or a test in-process)."""
        caller = caller or authz.internal_caller()
        before = copy.deepcopy(self.topo.desired)
        op: str | None = None
        args: dict[str, Any] = {}
        rule: authz.Rule | None = None
        try:
            op, args = parse_request(request, self._ops)
            rule = self.authorize(caller, op, args)
            result = self._ops[op](args)
        except Exception as exc:
            reply = error_reply(exc)
            if op is not None:
                audit(caller, op, args, rule, reply or reply_error("internal", str(exc)))
            if reply is None:
                raise
        else:
            if self.topo.desired != before and not self._try_save():
                reply = reply_error(
                    "not_saved", "done, but the configuration could not be saved "
                    f"({self._unsaved}); valed keeps trying, and the change is lost if "
                    "it stops first")
            else:
                reply = {"ok": True, "result": result}
            audit(caller, op, args, rule, reply)
            return reply
        if self.topo.desired != before:     # a failed request changes nothing
            log.error("a failed request had changed the configuration; restoring it")
            self.topo.desired = before
        return reply

    def open_stream(self, request: Any, caller: authz.Caller) -> Iterator[Any]:
        """The pages of a streamed operation's answer; ApiError (or ValueError) when the
        request is refused or wrong, before any page."""
        op, args = parse_request(request, self.streams)
        self.authorize(caller, op, args)
        return self.streams[op](args)

    def authorize(self, caller: authz.Caller, op: str, args: dict[str, Any]) -> authz.Rule:
        """The op's rule if `caller` may make this request, else ApiError("forbidden")."""
        return authz.authorize(caller, op, args, self.grants, self.topo.desired)

    def op_version(self, args: dict[str, Any]) -> dict[str, Any]:
        from vale import __version__
        return {"api": API_VERSION, "vale": __version__}

    def op_reload(self, args: dict[str, Any]) -> dict[str, Any]:
        """Bring up every desired port that is missing (what ExecReload asks)."""
        self.topo.retry_at.clear()          # asked for: try every port now
        return {"brought_up": self.topo.reconcile()}

    # -- saving ---------------------------------------------------------------------------

    def save(self) -> None:
        if self.state is not None:
            self.state.save(self.topo.desired)

    def _try_save(self) -> bool:
        """Save; on failure (a full or read-only disk) remember why, for housekeeping to
        try again and for the reply to say."""
        try:
            self.save()
        except OSError as exc:
            if not self._unsaved:
                log.error("cannot save the configuration: %s", exc)
            self._unsaved = exc.strerror or str(exc)
            return False
        if self._unsaved:
            log.info("the configuration is saved again")
        self._unsaved = ""
        return True

    # -- start, housekeeping, stop --------------------------------------------------------

    def restore(self, state: State) -> None:
        """Take a saved configuration: make the interfaces again, attach what exists."""
        self.topo.desired = state
        if self.interfaces.settle_tap_macs():
            self._try_save()
        self.interfaces.make_again()
        for switch in state.switches:
            try:
                self.topo.live_switch(switch)
            except (OSError, ValueError, TypeError) as exc:
                log.error("cannot start switch %s as saved: %s", switch, exc)
        self.topo.reconcile()

    def housekeeping(self) -> None:
        """Every second: follow the links; save what could not be saved."""
        self.topo.poll_links()
        if self._unsaved:
            self._try_save()

    def shutdown(self) -> None:
        self.topo.shutdown()


def audit(caller: authz.Caller, op: str, args: dict[str, Any], rule: authz.Rule | None,
          reply: dict[str, Any]) -> None:
    """Log a change, or a try at one, or a refusal, with who asked (reads go unlogged)."""
    refused = not reply.get("ok") and reply["error"]["code"] == "forbidden"
    if not refused and (rule is None or not (rule.changes or rule.capture)):
        return
    outcome = "done" if reply.get("ok") else f"failed: {reply['error']['code']}"
    shown = json.dumps(args, sort_keys=True, default=str)
    if len(shown) > 400:
        shown = shown[:400] + "..."
    (log.warning if refused else log.info)("%s: %s %s: %s", caller, op, shown, outcome)
