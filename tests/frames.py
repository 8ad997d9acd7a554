"""Building test frames."""

from __future__ import annotations

from vale.names import mac_to_key

BROADCAST = "ff:ff:ff:ff:ff:ff"


def mac(n: int) -> str:
    """A locally administered unicast MAC numbered n: 02:00:00:xx:xx:xx."""
    return "02:00:00:" + ":".join(f"{b:02x}" for b in n.to_bytes(3, "big"))


def frame(dst: str, src: str, size: int = 60, tag: int = 0) -> bytes:
    """An Ethernet frame of `size` bytes (no FCS) from src to dst; tag marks the payload
    so tests can tell frames apart."""
    head = (mac_to_key(dst).to_bytes(6, "little") + mac_to_key(src).to_bytes(6, "little")
            + b"\x88\xb5")
    body = tag.to_bytes(4, "big") * ((max(size - 14, 0) + 3) // 4)
    return (head + body)[:size] if size >= 14 else head[:size]


def tagged(data: bytes, *tags: tuple[int, int]) -> bytes:
    """data with VLAN tags, each (TPID, TCI), put after its MAC addresses."""
    return data[:12] + b"".join(t.to_bytes(2, "big") + c.to_bytes(2, "big")
                                for t, c in tags) + data[12:]


def vlan_tag(vid: int, pcp: int = 0, tpid: int = 0x8100) -> tuple[int, int]:
    return tpid, pcp << 13 | vid
