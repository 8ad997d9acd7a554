"""Two layers of state, and keeping them together: the *desired* configuration (what users
asked for, vale.state's records: saved and restored) and the *live* switches (what runs).
A desired port whose interface does not exist is `missing`, and comes back by itself when
the interface does."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vale import memif, netlink, vhost
from vale.api.interfaces import gid_of, open_made_tap, uid_of
from vale.api.protocol import ApiError
from vale.limits import Limits
from vale.names import check_switch_name, parse_port_ref
from vale.ports import interface_state
from vale.settings import of_scope
from vale.state import Interface, Port, State, SwitchConfig, parse_static
from vale.switch import FRAME_SLACK, Switch

log = logging.getLogger("vale.api")

RETRY_S = 5                 # a port that failed to come back is tried again after this
SWEEP_PORTS = 16            # live ports poll_links looks at a second (the watch sees the rest)


class Topology:
    """The desired configuration, the live switches, and bringing ports up and down."""

    def __init__(self, on_switch_added: Callable[[Switch], None] | None = None,
                 on_switch_removed: Callable[[Switch], None] | None = None,
                 limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.desired = State()
        self.switches: dict[str, Switch] = {}
        self._on_added = on_switch_added
        self._on_removed = on_switch_removed
        self.retry_at: dict[tuple[str, str], float] = {}      # (switch, port): monotonic
        # the sockets of vhost-user and memif ports
        self.endpoints: dict[tuple[str, str], vhost.Endpoint | memif.Endpoint] = {}
        self._sweep = 0                 # where poll_links's turn of live ports starts

    # -- the desired configuration --------------------------------------------------------

    def desired_switch(self, name: str) -> SwitchConfig:
        check_switch_name(name)
        try:
            return self.desired.switches[name]
        except KeyError:
            raise ApiError("not_found", f"no switch {name}") from None

    def desired_port(self, ref: str) -> tuple[str, str, Port]:
        switch, port = parse_port_ref(ref)
        ports = self.desired_switch(switch).ports
        if port not in ports:
            raise ApiError("not_found", f"no port {ref}")
        return switch, port, ports[port]

    def owner_of(self, ifname: str) -> str | None:
        for name, sw in self.desired.switches.items():
            if ifname in sw.ports:
                return name
        return None

    def check_not_own_peer(self, switch: str, ifname: str, desired: bool = True) -> None:
        """ApiError (loop) when interface `ifname` is a veth whose other end is a port of
        `switch`: live (by interface index, whatever its name now) or, with `desired`,
        configured (by name, so that it cannot come back later). The two ends on one
        switch forward every flood back to it, forever. A peer in another namespace is not
        checked: valed attaches interfaces of its own namespace only, so that end reaches
        this switch only through something else (a bridge, another switch), which loop
        detection in the data plane is for."""
        peer = netlink.veth_peer(ifname)
        if peer is None:
            return
        try:
            peer_name: str | None = socket.if_indextoname(peer)
        except OSError:                     # gone meanwhile
            peer_name = None
        sw = self.switches.get(switch)
        live = [port for port in sw.ports() if sw.ifindex(port) == peer] if sw else []
        configured = desired and peer_name is not None and \
            peer_name in self.desired.switches.get(switch, SwitchConfig()).ports
        if live or configured:
            other = live[0] if live else peer_name
            raise ApiError("loop", f"{ifname} is a veth whose other end, {other}, is a port "
                           f"of {switch}: both ends on one switch make a loop, every flood "
                           "going round and round. Attach it to another switch, or detach "
                           f"{other} first")

    def check_new_port(self, switch: str, settings: dict[str, Any]) -> None:
        """LimitError when a port with these settings on `switch` (new or not) would go
        over one of the daemon's limits: before anything is made."""
        self.limits.check_port_settings(settings)
        if switch not in self.desired.switches:
            self.limits.check_new_switch(len(self.desired.switches))

    def add_port(self, switch: str, port: str, settings: dict[str, Any]) -> None:
        """Desire the port, bring it up; on failure leave no trace."""
        check_switch_name(switch)
        self.check_new_port(switch, settings)
        switches = self.desired.switches
        created = switch not in switches
        if created:                         # a switch appears on its first attach, as in VALE
            switches[switch] = SwitchConfig()
        switches[switch].ports[port] = Port(settings)
        try:
            self.bring_up(switch, port)
        except BaseException:
            del switches[switch].ports[port]
            if created:
                del switches[switch]
                self.drop_live_switch(switch)
            raise

    def remove_port(self, switch: str, port: str) -> None:
        """Take the port down and forget it, its static entries and mirrors; a switch goes
        with its last port."""
        self.take_down(switch, port)
        config = self.desired.switches[switch]
        del config.ports[port]
        config.fdb = {mac: p for mac, p in config.fdb.items() if p != port}
        config.mirrors = {src: m for src, m in config.mirrors.items()
                          if port not in (src, m.to)}
        self.apply_mirrors(switch)
        if not config.ports:
            del self.desired.switches[switch]
            self.drop_live_switch(switch)

    # -- the live switches ----------------------------------------------------------------

    def live_switch(self, name: str) -> Switch:
        sw = self.switches.get(name)
        if sw is None:
            self.limits.check_new_switch(len(self.switches))
            sw = Switch(name)
            saved = self.desired.switches[name].settings
            settings = self.limits.within("switch", saved)
            if settings != saved:
                log.error("switch %s: fdb_capacity=%s is over this valed's limit; it gets "
                          "%s (valed --max-fdb-capacity)", name, saved["fdb_capacity"],
                          settings["fdb_capacity"])
            try:
                sw.configure(**settings)
            except (ValueError, TypeError) as exc:    # saved, and this machine refuses it
                log.error("switch %s: the saved settings are refused (%s); it runs with the "
                          "defaults until they are set again", name, exc)
            self.switches[name] = sw
            sw.start()
            if self._on_added:
                self._on_added(sw)
        return sw

    def drop_live_switch(self, name: str) -> None:
        sw = self.switches.pop(name, None)
        if sw is None:
            return
        sw.stop()
        for port in sw.ports():
            endpoint = self.endpoints.pop((name, port), None)
            if endpoint is not None:
                endpoint.close()
            sw.remove_port(port)
        if self._on_removed:
            self._on_removed(sw)

    def live(self, switch: str, port: str) -> bool:
        sw = self.switches.get(switch)
        return sw is not None and port in sw.ports()

    def bring_up(self, switch: str, port: str) -> None:
        """Make desired port `port` live: attach its interface (or open its TAP), then
        put back its static FDB entries and mirrors. Raises when the interface is not
        there."""
        config = self.desired.switches[switch]
        saved = config.ports[port].settings
        settings = self.limits.within("port", saved)
        if settings != saved:
            log.error("%s:%s: rx_frames=%s is over this valed's limit; it gets %s (valed "
                      "--max-rx-frames)", switch, port, saved["rx_frames"],
                      settings["rx_frames"])
        sw = self.live_switch(switch)
        made = self.desired.interfaces.get(port)
        if made is not None and made.kind in ("vhost_user", "memif"):
            self.bring_up_socket(sw, port, made, settings)
        elif made is not None and made.kind == "tap":
            fd = open_made_tap(port, made)
            try:
                sw.attach_tap(port, fd, **{k: v for k, v in settings.items()
                                           if k in of_scope("port")})
            except BaseException:
                os.close(fd)
                raise
        else:
            self.check_not_own_peer(switch, port, desired=False)
            sw.attach(port, **settings)
        for name, where in config.fdb.items():
            if where == port:
                mac, vlan = parse_static(name)
                sw.fdb_add(mac, port, vlan)
        self.apply_mirrors(switch)

    def bring_up_socket(self, sw: Switch, port: str, made: Interface,
                        settings: dict[str, Any]) -> None:
        """A vhost-user or memif port and its socket: it serves the VM or program that
        comes."""
        assert made.path is not None
        args = {k: v for k, v in settings.items() if k in of_scope("port")}
        endpoint: vhost.Endpoint | memif.Endpoint
        if made.kind == "vhost_user":
            sw.add_vhost_port(port, **args)
            endpoint = vhost.Endpoint(made.path, sw.vhost_rings(port), f"{sw.name}:{port}",
                                      client=made.mode == "client", owner=uid_of(made.owner),
                                      group=gid_of(made.group))
        else:
            sw.add_memif_port(port, **args)
            endpoint = memif.Endpoint(made.path, sw.memif_rings(port), f"{sw.name}:{port}",
                                      iface_id=made.iface_id or 0, secret=made.secret,
                                      owner=uid_of(made.owner), group=gid_of(made.group))
        try:
            endpoint.start()
        except BaseException:
            sw.remove_port(port)
            raise
        self.endpoints[(sw.name, port)] = endpoint

    def apply_mirrors(self, switch: str) -> None:
        """Set every live mirror source of `switch` to its live destination (or none)."""
        sw = self.switches.get(switch)
        if sw is None:
            return
        mirrors = self.desired.switches[switch].mirrors
        for source in sw.ports():
            rule = mirrors.get(source)
            target = rule.to if rule is not None and rule.to in sw.ports() else None
            sw.set_mirror(source,
                          rx_to=target if rule and rule.direction in ("rx", "both") else None,
                          tx_to=target if rule and rule.direction in ("tx", "both") else None)

    def take_down(self, switch: str, port: str) -> None:
        endpoint = self.endpoints.pop((switch, port), None)
        if endpoint is not None:
            endpoint.close()
        sw = self.switches.get(switch)
        if sw is not None and port in sw.ports():
            sw.remove_port(port)

    def port_summary(self, switch: str, port: str) -> dict[str, Any]:
        made = self.desired.interfaces.get(port)
        summary = {"switch": switch, "port": port,
                   "kind": "interface" if made is None else made.kind, "index": None,
                   "ifindex": None, "state": "missing"}
        if self.live(switch, port):
            sw = self.switches[switch]
            info = sw.port_info(port)
            ifindex = sw.ifindex(port)
            state = "up" if info["up"] else "down"
            if info["up"] and info["blocked"]:
                state = "blocked"           # by the loop guard, for info["blocked"] seconds
            elif info["up"] and info.get("rx_stuck"):  # its receive ring is gone for now
                state = "rx_stuck"
            if ifindex is not None and interface_state(port, ifindex) == "missing":
                state = "missing"
            summary.update(index=info["index"], ifindex=ifindex, state=state)
        return summary

    # -- following the interfaces ---------------------------------------------------------

    def reconcile(self, verify: set[tuple[str, str]] | None = None) -> list[str]:
        """Bring up desired ports that are not live but whose interface exists (a
        daemon-owned TAP always can be); take down live ports whose interface is gone (and
        make a daemon-owned TAP again): of the live ones, those in `verify` (None: all)."""
        brought = []
        now = time.monotonic()
        for switch, config in list(self.desired.switches.items()):
            if switch not in self.switches and len(self.switches) >= self.limits.switches:
                continue        # over --max-switches: the restore said so
            for port in list(config.ports):
                made = self.desired.interfaces.get(port)
                ours = made is not None and made.kind in ("tap", "vhost_user", "memif")
                if self.live(switch, port):
                    if verify is not None and (switch, port) not in verify:
                        continue
                    sw = self.switches[switch]
                    if ours:
                        # Ours, and the core put it down: its device was deleted and the fd
                        # is dead. Let it go and make it again, below, as at start.
                        if sw.port_info(port)["up"]:
                            continue
                        self.take_down(switch, port)
                        log.warning("%s:%s: its TAP is gone; making it again", switch, port)
                    else:
                        ifindex = sw.ifindex(port)
                        if ifindex is not None and interface_state(port, ifindex) == "missing":
                            self.take_down(switch, port)
                            log.warning("%s:%s is missing: its interface is gone", switch,
                                        port)
                        continue
                if not ours and not Path("/sys/class/net", port).exists():
                    continue
                # A failed try waits: making a TAP that then cannot move into its namespace
                # (gone after a reboot) sends link events, and each event calls this again.
                if now < self.retry_at.get((switch, port), 0):
                    continue
                try:
                    self.bring_up(switch, port)
                    self.retry_at.pop((switch, port), None)
                    brought.append(f"{switch}:{port}")
                    log.info("%s:%s is back", switch, port)
                except (OSError, ValueError, KeyError, TypeError, ApiError) as exc:
                    self.retry_at[(switch, port)] = now + RETRY_S
                    log.warning("%s:%s cannot come back yet (next try in %d s): %s",
                                switch, port, RETRY_S, exc)
        return brought

    def link_event(self, event: netlink.LinkEvent) -> None:
        """From the netlink watch: follow interfaces that vanish, return, change MTU or
        go up and down."""
        switch = self.owner_of(event.ifname)
        if switch is None:
            return
        live = self.live(switch, event.ifname)
        sw = self.switches.get(switch)
        if event.kind == "del":
            if live and sw is not None and sw.ifindex(event.ifname) == event.index:
                self.take_down(switch, event.ifname)
                log.warning("%s:%s is missing: the interface was deleted; the switch goes on "
                            "for the other ports", switch, event.ifname)
            return
        if not live:
            self.reconcile()
            return
        assert sw is not None
        if sw.ifindex(event.ifname) not in (None, event.index):
            return                          # an older incarnation; its DELLINK decides
        info = sw.port_info(event.ifname)
        if event.mtu and info.get("max_frame") != event.mtu + FRAME_SLACK and info["device"]:
            sw.port_link(event.ifname, mtu=event.mtu)
        if event.up and not info["up"]:
            sw.port_link(event.ifname, up=True)
            log.info("%s:%s is up again", switch, event.ifname)
        elif (not event.up and info["up"] and sw.ifindex(event.ifname) == event.index
              and interface_state(event.ifname, event.index) == "down"):
            # An interface port's link: a socket on the interface hears of it too, but
            # one on the fast path's upcall device does not. Asked anew: the event may be
            # an old one (made down, then up, before valed read either).
            sw.port_link(event.ifname, up=False)
            log.info("%s:%s is down", switch, event.ifname)

    def poll_links(self) -> None:
        """Kernel ring drops into the counters; anything the netlink watch missed (a
        port's link back up, an interface gone, a fast path taken away by hand),
        SWEEP_PORTS live ports a call in turn:
        with 1,024 ports, looking at all of them every second cost a tenth of a CPU."""
        live = [(switch, port) for switch, sw in list(self.switches.items())
                for port in sw.ports()]
        for switch, sw in list(self.switches.items()):
            for port in sw.poll_kernel_drops():
                log.warning("%s:%s: its receive ring was stuck (a frame the kernel could "
                            "not hand over, counted rx_stuck); made again", switch, port)
        start = self._sweep % len(live) if live else 0
        turn = set((live[start:] + live[:start])[:SWEEP_PORTS])
        self._sweep = start + SWEEP_PORTS
        by_switch: dict[str, list[str]] = {}
        for switch, port in turn:
            by_switch.setdefault(switch, []).append(port)
        for switch, ports in by_switch.items():
            try:
                self.switches[switch].kernel_check(ports)
            except OSError as exc:      # an interface going away meanwhile
                log.warning("%s: putting its kernel fast path back: %s", switch, exc)
        for switch, port in turn:
            sw = self.switches[switch]
            ifindex = sw.ifindex(port)
            if ifindex is not None and not sw.port_info(port)["up"] \
                    and interface_state(port, ifindex) == "up":
                sw.port_link(port, up=True)
                log.info("%s:%s is up again", switch, port)
        self.reconcile(turn)

    def shutdown(self) -> None:
        for name in list(self.switches):
            self.drop_live_switch(name)
