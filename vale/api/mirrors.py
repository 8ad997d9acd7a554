"""Port mirrors (copies of ports' traffic to another port, kept in the desired
configuration) and the checks of a capture request (the daemon streams the frames)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vale.api.protocol import ApiError, arg, check_direction
from vale.state import Mirror
from vale.switch import Switch

if TYPE_CHECKING:
    from vale.api.topology import Topology


class MirrorOps:
    def __init__(self, topo: Topology) -> None:
        self.topo = topo

    def ops(self) -> dict[str, Any]:
        return {"mirror_add": self.op_mirror_add, "mirror_del": self.op_mirror_del,
                "mirror_show": self.op_mirror_show}

    def op_mirror_add(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Copy the traffic of ports `from` (rx, tx or both) to port `to`."""
        switch = arg(args, "switch", str)
        mirrors = self.topo.desired_switch(switch).mirrors
        sources = arg(args, "from", list)
        target = arg(args, "to", str)
        direction = check_direction(arg(args, "direction", str, "both"))
        if not sources or not all(isinstance(p, str) for p in sources):
            raise ApiError("bad_request", "from is a list of port names")
        for port in [*sources, target]:
            self.topo.desired_port(f"{switch}:{port}")
        if target in sources:
            raise ApiError("invalid", f"{switch}:{target} cannot mirror to itself")
        if target in mirrors:
            raise ApiError("mirror_loop", f"{switch}:{target} is itself mirrored: copying to it "
                           "would make a mirror loop")
        for source in sources:
            if any(rule.to == source for rule in mirrors.values()):
                raise ApiError("mirror_loop", f"{switch}:{source} receives a mirror: mirroring "
                               "it would make a mirror loop")
        for source in sources:
            mirrors[source] = Mirror(target, direction)
        self.topo.apply_mirrors(switch)
        return self.op_mirror_show({"switch": switch})

    def op_mirror_del(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        switch = arg(args, "switch", str)
        mirrors = self.topo.desired_switch(switch).mirrors
        sources = arg(args, "from", list, None)
        for source in sources if sources is not None else list(mirrors):
            if not isinstance(source, str):
                raise ApiError("bad_request", "from is a list of port names")
            if source not in mirrors:
                raise ApiError("not_found", f"{switch}:{source} is not mirrored")
        for source in sources if sources is not None else list(mirrors):
            del mirrors[source]
        self.topo.apply_mirrors(switch)
        return self.op_mirror_show({"switch": switch})

    def op_mirror_show(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        mirrors = self.topo.desired_switch(arg(args, "switch", str)).mirrors
        return [{"from": source, "to": rule.to, "direction": rule.direction}
                for source, rule in mirrors.items()]

    def capture_target(self, args: dict[str, Any]) -> tuple[Switch, str, bool, bool]:
        """Check a capture request: (switch, port, rx, tx)."""
        switch, port, _ = self.topo.desired_port(arg(args, "port", str))
        direction = check_direction(arg(args, "direction", str, "both"))
        if not self.topo.live(switch, port):
            raise ApiError("not_found", f"{switch}:{port} is missing: nothing to capture")
        return self.topo.switches[switch], port, direction != "tx", direction != "rx"
