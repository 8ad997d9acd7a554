"""Both ends of one veth pair on one switch are a loop (one broadcast became 488,175 copies
in a second): valed refuses the second end, at attach, at create, and when ports it keeps
come back as such a pair. Real veth pairs; root; skipped otherwise."""

from __future__ import annotations

import json
import time

import pytest

from tests.integration.conftest import PREFIX, sh
from vale.client import ClientError


@pytest.fixture
def pairs():
    """pairs(a, b): a veth pair named PREFIX+a / PREFIX+b, up, in this namespace."""
    made: list[str] = []

    def make(a: str, b: str) -> tuple[str, str]:
        one, two = PREFIX + a, PREFIX + b
        sh("ip", "link", "add", one, "type", "veth", "peer", "name", two)
        made.append(one)
        for name in (one, two):
            sh("ip", "link", "set", name, "up")
        return one, two
    yield make
    for name in made:
        sh("ip", "link", "del", name, check=False)


def refused(valed, op: str, **args) -> str:
    """The request fails with code loop and changes neither the ports nor the state file."""
    ports, saved = valed("list"), (valed.log.parent / "state.json").read_text()
    with pytest.raises(ClientError) as failure:
        valed(op, **args)
    assert failure.value.code == "loop", failure.value
    assert valed("list") == ports
    assert (valed.log.parent / "state.json").read_text() == saved
    return str(failure.value)


def test_the_second_end_of_a_veth_pair_is_refused_on_the_same_switch(valed, pairs):
    one, two = pairs("p001", "p002")
    valed("attach", port=f"vale0:{one}")
    message = refused(valed, "attach", port=f"vale0:{two}")
    assert one in message and two in message and "vale0" in message and "loop" in message
    # on another switch the pair is a link between the two switches, not a loop
    valed("attach", port=f"vale1:{two}")
    assert {p["port"]: p["state"] for p in valed("list")} == {one: "up", two: "up"}


def test_a_veth_whose_peer_is_configured_there_cannot_be_created(valed, pairs):
    """The peer is configured on vale0 but missing (its interface was deleted): a veth
    made with that peer would bring it back, on the same switch."""
    one, _ = pairs("p003", "p004")
    valed("attach", port=f"vale0:{one}")
    sh("ip", "link", "del", one)
    deadline = time.monotonic() + 5
    while {p["port"]: p["state"] for p in valed("list")}[one] != "missing":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    made = PREFIX + "t001"
    message = refused(valed, "create", name=made, kind="veth", switch="vale0", peer=one)
    assert one in message
    assert sh("ip", "link", "show", made, check=False).returncode != 0   # nothing made
    # elsewhere it may
    valed("create", name=made, kind="veth", switch="vale1", peer=one)
    valed("remove", name=made)


def test_ports_that_come_back_as_one_veth_pair_are_not_both_attached(valed, pairs):
    """Two configured ports, each missing, come back as the two ends of one pair: the
    first to come back is attached, the other refused (logged), and the switch forwards
    for the rest."""
    one, two = PREFIX + "p005", PREFIX + "p006"
    for name, other in ((one, "p007"), (two, "p008")):
        pairs(name[len(PREFIX):], other)
        valed("attach", port=f"vale0:{name}")
    for name in (one, two):
        sh("ip", "link", "del", name)
    pairs("p005", "p006")
    deadline = time.monotonic() + 10
    while True:
        states = {p["port"]: p["state"] for p in valed("list")}
        if sorted(states.values()) == ["missing", "up"] and "make a loop" in \
                valed.log.read_text():
            break
        assert time.monotonic() < deadline, (states, valed.log.read_text()[-2000:])
        time.sleep(0.2)
    assert "Traceback" not in valed.log.read_text()
    saved = json.loads((valed.log.parent / "state.json").read_text())
    assert set(saved["switches"]["vale0"]["ports"]) == {one, two}    # both still configured
