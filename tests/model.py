"""A pure-Python reference model of the forwarding core's rules.

It has SwitchCore's interface and follows the same documented rules (docs/architecture.md,
"Forwarding rules"), written plainly: dicts and lists, one frame at a time. The property
tests run random traffic through both and require the same frames out, FDB and counters.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from vale._fastpath import BPDU_MODES, DEFAULT_SPIN_US, DROP_REASONS, MAX_ALLOWED_MACS

MAX_PORTS = 1024
MAX_BATCH = 1024
HIST_BUCKETS = 11
ETH_HLEN = 14
TAG_TYPES = (b"\x81\x00", b"\x88\xa8")
ALL_VLANS = frozenset(range(4095))      # what a port without a VLAN mode carries
BPDU_DST = bytes.fromhex("0180c2000000")    # spanning tree's destination


def _ms(seconds: float) -> int:
    return int(seconds * 1000.0 + 0.5)


def _check_int(what: str, value: object, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer between {low} and {high}, not {value!r}")


@dataclass
class _Entry:
    port: int
    static: bool
    last_seen: int
    window_start: int
    ban_until: int = 0
    moves: int = 0
    settled: int = -1           # the port it was on when the move window began

    def __post_init__(self):
        if self.settled < 0:
            self.settled = self.port


@dataclass
class _Port:
    index: int
    rx_slots: int
    tx_slots: int
    slot_size: int
    learning: bool
    flood: bool
    learn_limit: int
    vlan_mode: str = "none"
    native: int = 0
    vlans: frozenset = ALL_VLANS
    listed: list = field(default_factory=list)      # allowed_macs as set
    allowed: set = field(default_factory=set)       # listed and sticky
    sticky: int = 0
    bpdu: str = "forward"
    blocked: bool = False
    rx: list = field(default_factory=list)
    tx: list = field(default_factory=list)
    lru: OrderedDict = field(default_factory=OrderedDict)   # dynamic MACs, oldest first
    counters: dict = field(default_factory=lambda: {
        "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0, "flood_packets": 0,
        "tx_ring_packets": 0, "drops": dict.fromkeys(DROP_REASONS, 0)})


class ModelCore:
    def __init__(self, *, capacity=65536, ageing=300.0, batch=256, manual_clock=False,
                 move_limit=4, move_window=10.0, ban=60.0, loop_hold=30.0):
        """The loop guard's probes are not modelled (no generated frame is one): only its
        setting and counters are here."""
        assert manual_clock, "the model only runs on a manual clock"
        _check_int("fdb capacity", capacity, 1, 1 << 24)
        _check_int("batch", batch, 1, MAX_BATCH)
        self.capacity = capacity
        self.ageing = _ms(ageing)
        self.batch = batch
        self.move_limit = move_limit
        self.move_window = _ms(move_window)
        self.ban = _ms(ban)
        self.loop_hold = _ms(loop_hold)
        self.now_ms = 0
        self.ports: dict[int, _Port] = {}
        self.fdb: dict[int, _Entry] = {}
        self.totals = dict.fromkeys(("learned", "moved", "expired", "evicted"), 0)
        self.batches = 0
        self.batch_frames = 0
        self.hist = [0] * HIST_BUCKETS

    # -- ports ----------------------------------------------------------------------------

    def _port(self, index) -> _Port:
        if index not in self.ports:
            raise ValueError(f"no port with index {index}")
        return self.ports[index]

    def add_port(self, *, rx_slots=1024, tx_slots=1024, slot_size=2048, learning=True,
                 flood=True, learn_limit=0):
        index = min(set(range(MAX_PORTS)) - set(self.ports))
        self.ports[index] = _Port(index, rx_slots, tx_slots, slot_size, learning, flood,
                                  learn_limit)
        return index

    def remove_port(self, index):
        self._port(index)
        self._unsettle(index)
        for key in [k for k, e in self.fdb.items() if e.port == index]:
            self._remove(key)
        before = self._filtering()
        del self.ports[index]
        if before and not self._filtering():
            self._forget_learned()

    def _unsettle(self, index):
        """Entries a ban would put back on port index stay where they are instead."""
        for e in self.fdb.values():
            if e.settled == index:
                e.settled = e.port

    def _forget_learned(self):
        for key in [k for k, e in self.fdb.items() if not e.static]:
            self._remove(key)

    def set_port(self, index, *, learning=None, flood=None, learn_limit=None, vlan=None,
                 native=None, allowed_macs=None, sticky=None, bpdu=None):
        if vlan is not None:
            mode, native, vlans = self._vlan_setting(vlan, native)
        if allowed_macs is not None:
            allowed_macs = sorted(set(allowed_macs))
            if len(allowed_macs) > MAX_ALLOWED_MACS:
                raise ValueError("too many allowed MACs")
            for mac in allowed_macs:
                _check_int("an allowed MAC", mac, 1, (1 << 48) - 1)
                if mac & 1:
                    raise ValueError("an allowed MAC must be unicast")
        if sticky is not None:
            _check_int("sticky", sticky, 0, MAX_ALLOWED_MACS)
        if bpdu is not None and bpdu not in BPDU_MODES:
            raise ValueError(f"bpdu must be one of {BPDU_MODES}")
        p = self._port(index)
        if allowed_macs is not None or sticky is not None:
            if allowed_macs is not None:
                p.listed = allowed_macs
            if sticky is not None:
                p.sticky = sticky
            p.allowed = set(p.listed)
        if bpdu is not None:
            p.bpdu, p.blocked = bpdu, False
        if vlan is not None:
            before = self._filtering()
            p.vlan_mode, p.native, p.vlans = mode, native, vlans
            self._unsettle(index)
            for key in list(p.lru):
                self._remove(key)
            if before != self._filtering():     # VLANs on or off: the keys change
                self._forget_learned()
        if learning is not None:
            p.learning = bool(learning)
        if flood is not None:
            p.flood = bool(flood)
        if learn_limit is not None:
            p.learn_limit = learn_limit

    def port_info(self, index):
        p = self._port(index)
        return {"index": index, "kind": "memory", "learning": p.learning, "flood": p.flood,
                "learn_limit": p.learn_limit, "vlan": p.vlan_mode, "native": p.native,
                "vlans": sorted(p.vlans) if p.vlan_mode != "none" else [],
                "storm": (0, 0, 0), "allowed_macs": list(p.listed),
                "sticky_macs": sorted(p.allowed - set(p.listed)), "sticky": p.sticky,
                "bpdu": p.bpdu, "bpdu_blocked": p.blocked, "rx_stuck": False,
                "rx_resets": 0}

    @staticmethod
    def _vlan_setting(vlan, native):
        if vlan == "none":
            if native not in (None, 0):
                raise ValueError("a port without a VLAN mode has no native VLAN")
            return "none", 0, ALL_VLANS
        mode, ids = vlan
        if mode == "access":
            _check_int("an access VLAN", ids, 1, 4094)
            if native not in (None, 0, ids):
                raise ValueError("an access port's native VLAN is its VLAN")
            return "access", ids, frozenset([ids])
        ids = list(ids)
        for v in ids:
            _check_int("a trunk's VLAN", v, 1, 4094)
        native = native or 0
        _check_int("a native VLAN", native, 0, 4094)
        if not ids and not native:
            raise ValueError("a trunk must carry at least one VLAN")
        return "trunk", native, frozenset(ids) | ({native} if native else set())

    # -- frames ---------------------------------------------------------------------------

    def inject(self, index, frames):
        p = self._port(index)
        accepted = 0
        for frame in frames:
            if len(frame) > p.slot_size:
                p.counters["drops"]["too_big"] += 1
            elif len(p.rx) == p.rx_slots:
                p.counters["drops"]["ring_full"] += 1
            else:
                p.rx.append(bytes(frame))
                accepted += 1
        return accepted

    def drain(self, index, limit=None):
        p = self._port(index)
        n = len(p.tx) if limit is None else min(limit, len(p.tx))
        out, p.tx = p.tx[:n], p.tx[n:]
        return out

    def forward(self, index):
        p = self._port(index)
        n = min(len(p.rx), self.batch)
        if n:
            batch, p.rx = p.rx[:n], p.rx[n:]
            self._expire()
            for frame in batch:
                self._forward_frame(p, frame)
            self.batches += 1
            self.batch_frames += n
            self.hist[max(0, (n - 1).bit_length())] += 1
        return n

    def forward_all(self):
        total = 0
        while True:
            n = sum(self.forward(i) for i in sorted(self.ports))
            if n == 0:
                return total
            total += n

    @staticmethod
    def _ingress(src: _Port, frame: bytes):
        """(frame without its tag, the tag as (TPID, TCI) or None, VLAN), or None to drop."""
        if frame[12:14] not in TAG_TYPES:
            if src.vlan_mode != "none" and not src.native:
                return None
            return frame, None, src.native
        if len(frame) < ETH_HLEN + 4:
            return None
        tag = (int.from_bytes(frame[12:14], "big"), int.from_bytes(frame[14:16], "big"))
        frame = frame[:12] + frame[16:]
        vid = tag[1] & 0xFFF
        if vid == 4095:
            return None
        if src.vlan_mode == "none":
            return frame, tag, vid
        if frame[12:14] in TAG_TYPES:
            return None
        if vid == 0:
            return (frame, None, src.native) if src.native else None
        return (frame, tag, vid) if vid in src.vlans else None

    def _filtering(self) -> bool:
        return any(p.vlan_mode != "none" for p in self.ports.values())

    def _forward_frame(self, src: _Port, frame: bytes) -> None:
        c = src.counters
        c["rx_packets"] += 1
        c["rx_bytes"] += len(frame)
        if len(frame) < ETH_HLEN:
            c["drops"]["runt"] += 1
            return
        # No port with a VLAN mode: VLANs ignored, every frame keyed in VLAN 0 as it is.
        got = self._ingress(src, frame) if self._filtering() else (frame, None, 0)
        if got is None:
            c["drops"]["vlan"] += 1
            return
        frame, tag, vlan = got
        dst_key = int.from_bytes(frame[0:6], "little") | vlan << 48
        src_mac = int.from_bytes(frame[6:12], "little")
        reason = self._guard(src, src_mac, frame[0:6])
        if reason:
            c["drops"][reason] += 1
            return
        if src.learning and not src_mac & 1 and src_mac != 0:
            reason = self._learn(src, src_mac | vlan << 48)
            if reason:
                c["drops"][reason] += 1
                return
        if dst_key & 1:
            unknown = False
        else:
            entry = self.fdb.get(dst_key)
            if entry is not None:
                dst = self.ports[entry.port]
                if entry.port == src.index:
                    c["drops"]["own_port"] += 1
                elif self._filtering() and vlan not in dst.vlans:
                    c["drops"]["vlan"] += 1
                else:
                    self._transmit(dst, frame, tag, vlan)
                return
            unknown = True
        c["flood_packets"] += 1
        for index in sorted(self.ports):
            dst = self.ports[index]
            if (index != src.index and (dst.flood or not unknown)
                    and (not self._filtering() or vlan in dst.vlans)):
                self._transmit(dst, frame, tag, vlan)

    @staticmethod
    def _egress_tag(dst: _Port, tag, vlan: int):
        if vlan == dst.native and (dst.vlan_mode != "none" or tag is None):
            return None
        if tag is not None and tag[1] & 0xFFF == vlan:
            return tag
        return 0x8100, vlan

    def _transmit(self, dst: _Port, frame: bytes, tag, vlan: int) -> None:
        out = self._egress_tag(dst, tag, vlan)
        if out is not None:
            frame = frame[:12] + out[0].to_bytes(2, "big") + out[1].to_bytes(2, "big") + frame[12:]
        if len(frame) > dst.slot_size:
            dst.counters["drops"]["too_big"] += 1
        elif len(dst.tx) == dst.tx_slots:
            dst.counters["drops"]["ring_full"] += 1
        else:
            dst.tx.append(frame)
            dst.counters["tx_packets"] += 1
            dst.counters["tx_bytes"] += len(frame)

    @staticmethod
    def _guard(src: _Port, src_mac: int, dst: bytes) -> str | None:
        """The port's guards: blocked by BPDU guard, a source it may not send from
        (sticky: the first sources join the allowed ones), a BPDU it does not take."""
        if src.blocked:
            return "bpdu"
        if src.listed or src.sticky:
            if src_mac not in src.allowed:
                if len(src.allowed) >= src.sticky or src_mac & 1 or src_mac == 0:
                    return "spoofed"
                src.allowed.add(src_mac)
        if src.bpdu != "forward" and dst == BPDU_DST:
            src.blocked = src.bpdu == "guard"
            return "bpdu"
        return None

    # -- learning -------------------------------------------------------------------------

    def _learn(self, src: _Port, key: int) -> str | None:
        now = self.now_ms
        e = self.fdb.get(key)
        at_limit = src.learn_limit and len(src.lru) >= src.learn_limit
        if e is None:
            if at_limit:
                return "learn_limit"
            if len(self.fdb) >= self.capacity and not self._evict_one(src.index):
                return None
            self.fdb[key] = _Entry(src.index, False, now, now)
            src.lru[key] = None
            self.totals["learned"] += 1
            return None
        if e.static:
            return None
        if e.port == src.index:
            if e.last_seen != now:      # ties keep the order of first sighting
                e.last_seen = now
                src.lru.move_to_end(key)
            return None
        if now < e.ban_until:
            return "learn_banned"
        if at_limit:
            return "learn_limit"
        if now - e.window_start >= self.move_window:
            e.window_start, e.moves, e.settled = now, 0, e.port
        if self.move_limit and e.moves >= self.move_limit:
            # Banned on the port it was on before the moves began.
            e.ban_until, e.moves, e.window_start = now + self.ban, 0, now
            if e.port != e.settled:
                self._move(key, e, e.settled)
            return None if e.port == src.index else "learn_banned"
        e.moves += 1
        self._move(key, e, src.index)
        self.totals["moved"] += 1
        return None

    def _move(self, key: int, e: _Entry, port: int) -> None:
        del self.ports[e.port].lru[key]
        e.port, e.last_seen = port, self.now_ms
        self.ports[port].lru[key] = None

    def _remove(self, key: int) -> None:
        e = self.fdb.pop(key)
        if not e.static:
            del self.ports[e.port].lru[key]

    def _evict_one(self, prefer: int | None) -> bool:
        counts = {i: len(p.lru) for i, p in self.ports.items()}
        most = max(counts.values(), default=0)
        if most == 0:
            return False
        victim = min(i for i, n in counts.items() if n == most)
        if prefer is not None and counts.get(prefer) == most:
            victim = prefer
        self._remove(next(iter(self.ports[victim].lru)))
        self.totals["evicted"] += 1
        return True

    def _expire(self) -> None:
        if not self.ageing:
            return
        for p in self.ports.values():
            while p.lru:
                key = next(iter(p.lru))
                if self.now_ms - self.fdb[key].last_seen < self.ageing:
                    break
                self._remove(key)
                self.totals["expired"] += 1

    # -- the MAC table API ----------------------------------------------------------------

    def fdb_entries(self):
        self._expire()
        return [(k, e.port, e.static, (self.now_ms - e.last_seen) / 1000.0)
                for k, e in self.fdb.items()]

    def fdb_chunk(self, start):
        """The model's table is one chunk."""
        return (self.fdb_entries() if start == 0 else []), None

    def fdb_lookup(self, key):
        self._expire()
        e = self.fdb.get(key)
        return None if e is None else e.port

    def fdb_add(self, key, index):
        if key & 0xFFFFFFFFFFFF == 0 or key & 1 or key >> 48 > 4094:
            raise ValueError("a static entry needs a unicast, non-zero MAC and a VLAN of 0..4094")
        self._port(index)
        self._expire()
        if key in self.fdb:
            self._remove(key)
        elif len(self.fdb) >= self.capacity and not self._evict_one(None):
            raise ValueError("the FDB is full of static entries")
        self.fdb[key] = _Entry(index, True, self.now_ms, self.now_ms)

    def fdb_del(self, key):
        self._expire()
        if key not in self.fdb:
            return False
        self._remove(key)
        return True

    def fdb_flush(self, port=None, *, statics=False):
        if port is not None:
            self._port(port)
        self._expire()
        if port is not None:
            self._unsettle(port)
        doomed = [k for k, e in self.fdb.items()
                  if (port is None or e.port == port) and (statics or not e.static)]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def check_capacity(self, capacity):
        statics = sum(e.static for e in self.fdb.values())
        if capacity < statics:
            raise ValueError("more static entries than that")

    def set_capacity(self, capacity):
        self._expire()
        self.check_capacity(capacity)
        while len(self.fdb) > capacity:
            self._evict_one(None)
        self.capacity = capacity

    def configure(self, *, ageing=None, batch=None, move_limit=None, move_window=None, ban=None,
                  loop_hold=None):
        if loop_hold is not None:
            self.loop_hold = _ms(loop_hold)
        if ageing is not None:
            self.ageing = _ms(ageing)
        if batch is not None:
            self.batch = batch
        if move_limit is not None:
            self.move_limit = move_limit
        if move_window is not None:
            self.move_window = _ms(move_window)
        if ban is not None:
            self.ban = _ms(ban)

    @property
    def now(self):
        return self.now_ms / 1000.0

    def set_time(self, seconds):
        ms = _ms(seconds)
        if ms < self.now_ms:
            raise ValueError("the clock cannot go backwards")
        self.now_ms = ms

    def snapshot(self):
        self._expire()
        return {
            "now": self.now,
            "fdb": {"entries": len(self.fdb), "static": sum(e.static for e in self.fdb.values()),
                    "capacity": self.capacity, **self.totals},
            "batches": self.batches,
            "batch_frames": self.batch_frames,
            "loops": 0,
            "batch_hist": list(self.hist),
            "settings": {"ageing": self.ageing / 1000.0, "batch": self.batch,
                         "move_limit": self.move_limit, "move_window": self.move_window / 1000.0,
                         "ban": self.ban / 1000.0, "busy_poll_us": DEFAULT_SPIN_US,
                         "lookup": "learning", "loop_hold": self.loop_hold / 1000.0},
            "ports": {i: {**{k: v for k, v in p.counters.items() if k != "drops"},
                          "drops": dict(p.counters["drops"]), "fdb_entries": len(p.lru),
                          "up": True, "blocked": False, "loops_found": 0,
                          "capture_lost": 0}
                      for i, p in sorted(self.ports.items())},
        }
