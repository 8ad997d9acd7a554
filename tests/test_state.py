"""The state file's loader: a document of the right shape becomes typed records, and one
of any other shape is moved aside with one log line saying why, the daemon starting
empty: never a crash, never a crash loop."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import start_valed, stop_valed
from vale.state import Interface, Mirror, Port, State, StateFile, SwitchConfig, load_state

GOOD = {
    "version": 1,
    "switches": {"vale0": {
        "settings": {"ageing": 120.0, "cpus": [0], "batch": 64},
        "ports": {"eth9": {"learn_limit": 50, "rx_frames": 512}, "tap0": {}},
        "fdb": {"02:00:00:00:00:01": "eth9"},
        "mirrors": {"eth9": {"to": "tap0", "direction": "rx"}}}},
    "interfaces": {
        "tap0": {"kind": "tap", "switch": "vale0", "netns": "ns1",
                 "address": "198.18.0.1/24", "mac": "02:00:00:00:00:09"},
        "v0": {"kind": "veth", "switch": "vale0", "peer": "v0-p", "netns": None,
               "address": None},
        "vm0": {"kind": "persistent_tap", "switch": "vale0", "owner": "alice",
                "group": None},
        "app1": {"kind": "memif", "switch": "vale0", "path": "/run/vale/memif/app1.sock",
                 "iface_id": 7, "secret": "s3cret", "owner": None, "group": None}},
}


def test_a_saved_document_loads_as_records_and_saves_as_it_was(tmp_path):
    (tmp_path / "state.json").write_text(json.dumps(GOOD))
    state = StateFile(tmp_path).load()
    sw = state.switches["vale0"]
    assert sw.ports["eth9"] == Port({"learn_limit": 50, "rx_frames": 512})
    assert sw.mirrors == {"eth9": Mirror("tap0", "rx")}
    assert state.interfaces["v0"] == Interface("veth", "vale0", peer="v0-p")
    assert state.to_json() == GOOD
    StateFile(tmp_path).save(state)
    assert json.loads((tmp_path / "state.json").read_text()) == GOOD


def test_a_document_saved_before_mirrors_were_kept_loads():
    doc = json.loads(json.dumps(GOOD))
    del doc["switches"]["vale0"]["mirrors"]
    assert load_state(doc).switches["vale0"].mirrors == {}


def shape(path: str, value):
    """GOOD with the value at path (keys joined by '/') replaced; ... deletes it."""
    doc = json.loads(json.dumps(GOOD))
    *parents, last = path.split("/")
    where = doc
    for key in parents:
        where = where[key]
    if value is ...:
        del where[last]
    else:
        where[last] = value
    return doc


BAD = {
    "an interface record that is a string": (shape("interfaces/v0", "veth"), "interfaces.v0"),
    "mirrors null": (shape("switches/vale0/mirrors", None), "vale0.mirrors"),
    "an owner that is a number": (shape("interfaces/vm0/owner", 1000), "vm0.owner"),
    "an unknown key": (shape("switches/vale0/colour", "red"), "unknown colour"),
    "an unknown top-level key": (shape("extra", 1), "unknown extra"),
    "a key of another kind": (shape("interfaces/v0/mac", "02:00:00:00:00:02"), "unknown mac"),
    "a setting out of range": (shape("switches/vale0/ports/eth9/learn_limit", -1),
                               "learn_limit"),
    "a switch setting out of range": (shape("switches/vale0/settings/batch", 5000), "batch"),
    "an unknown setting": (shape("switches/vale0/settings/colour", 1), "colour"),
    "a switch that is a list": (shape("switches/vale0", []), "switches.vale0"),
    "a bad switch name": (shape("switches/BAD NAME", GOOD["switches"]["vale0"]), "BAD NAME"),
    "a bad port name": (shape("switches/vale0/ports/a b", {}), "a b"),
    "an interface without a kind": (shape("interfaces/v0/kind", ...), "kind"),
    "a veth without a peer": (shape("interfaces/v0/peer", ...), "v0"),
    "a static entry to a group MAC": (shape("switches/vale0/fdb/01:00:5e:00:00:01", "eth9"),
                                      "unicast"),
    "a mirror direction": (shape("switches/vale0/mirrors/eth9/direction", "up"), "direction"),
    "no switches": (shape("switches", ...), "missing switches"),
    "another version": (shape("version", 2), "version 1"),
    "a list": ([GOOD], "an object expected"),
    "deep nesting": ("[" * 100000 + "]" * 100000, "recursion"),
    "not JSON": ('{"version": 1, "switches": {"vale0": ', "Expecting"),
    # every field, by its path
    "a version that is true": (shape("version", True), "version: not a version 1"),
    "a port setting of the wrong type": (shape("switches/vale0/ports/eth9/vlan", 10),
                                         "switches.vale0.ports.eth9.vlan: "),
    "a VLAN out of range": (shape("switches/vale0/ports/tap0/vlan", "access:4095"),
                            "switches.vale0.ports.tap0.vlan: "),
    "a native VLAN on a port without a mode": (shape("switches/vale0/ports/tap0/native", 5),
                                               "switches.vale0.ports.tap0.native: "),
    "rx_frames out of range": (shape("switches/vale0/ports/eth9/rx_frames", 1 << 20),
                               "switches.vale0.ports.eth9.rx_frames: "),
    "ageing too large to be a float": (shape("switches/vale0/settings/ageing", 10 ** 400),
                                       "switches.vale0.settings.ageing: "),
    "fdb_capacity out of range": (shape("switches/vale0/settings/fdb_capacity", 1 << 30),
                                  "switches.vale0.settings.fdb_capacity: "),
    "cpus of the wrong kind": (shape("switches/vale0/settings/cpus", {"a": 1}),
                               "switches.vale0.settings.cpus: "),
    "a static entry to a port the switch lacks": (
        shape("switches/vale0/fdb/02:00:00:00:00:01", "eth7"),
        "switches.vale0.fdb.02:00:00:00:00:01: not a port"),
    "a static entry in VLAN 4096": (shape("switches/vale0/fdb/02:00:00:00:00:05@4096", "eth9"),
                                    "switches.vale0.fdb.02:00:00:00:00:05@4096"),
    "a static entry with a VLAN in other digits": (
        shape("switches/vale0/fdb/02:00:00:00:00:05@\u0663", "eth9"), "VLAN of 0"),
    "the same static entry twice": (shape("switches/vale0/fdb/02:00:00:00:00:01@0", "eth9"),
                                    "twice"),
    "a mirror to a port the switch lacks": (shape("switches/vale0/mirrors/eth9/to", "eth7"),
                                            "switches.vale0.mirrors.eth9: eth7"),
    "a mirror to itself": (shape("switches/vale0/mirrors/eth9/to", "eth9"),
                           "switches.vale0.mirrors.eth9.to: "),
    "a mirror chain": (shape("switches/vale0/mirrors/tap0", {"to": "eth9", "direction": "tx"}),
                       "mirror loop"),
    "a port on two switches": (shape("switches/vale1", {"settings": {}, "ports": {"eth9": {}},
                                                        "fdb": {}}),
                               "switches.vale1.ports.eth9: also a port of vale0"),
    "a kind that is a list": (shape("interfaces/v0/kind", ["veth"]), "interfaces.v0.kind"),
    "an interface on another switch than its port": (shape("interfaces/tap0/switch", "vale1"),
                                                     "interfaces.tap0.switch"),
    "a bad namespace name": (shape("interfaces/tap0/netns", "../etc"),
                             "interfaces.tap0.netns: "),
    "an address without a prefix": (shape("interfaces/tap0/address", "198.18.0.1"),
                                    "interfaces.tap0.address: "),
    "a TAP address without a namespace": (shape("interfaces/tap0/netns", None),
                                          "interfaces.tap0.address: "),
    "a MAC that is not one": (shape("interfaces/tap0/mac", "tap"), "interfaces.tap0.mac: "),
    "a group MAC": (shape("interfaces/tap0/mac", "01:00:5e:00:00:01"), "interfaces.tap0.mac"),
    "a zero MAC": (shape("interfaces/tap0/mac", "00:00:00:00:00:00"), "interfaces.tap0.mac"),
    "a veth that is its own peer": (shape("interfaces/v0/peer", "v0"), "interfaces.v0.peer"),
    "a veth with its peer on its switch": (shape("switches/vale0/ports/v0-p", {}),
                                           "interfaces.v0.peer: v0-p is a port of vale0"),
    "an owner that is no name": (shape("interfaces/vm0/owner", "a b"), "interfaces.vm0.owner"),
    "a group with a newline": (shape("interfaces/vm0/group", "x\ny"), "interfaces.vm0.group"),
    "a memif id over 32 bits": (shape("interfaces/app1/iface_id", 1 << 32),
                                "interfaces.app1.iface_id: a memif id is 0 to"),
    "a memif without its id": (shape("interfaces/app1/iface_id", ...), "interfaces.app1"),
    "a memif secret over 23 bytes": (shape("interfaces/app1/secret", "x" * 24),
                                     "interfaces.app1.secret"),
    "a memif socket that is relative": (shape("interfaces/app1/path", "app1.sock"),
                                        "interfaces.app1.path"),
    "a key that is a control character": (shape("switches/vale0/ports/eth9/\n", 1),
                                          "'\\n': unknown setting"),
    "deep nesting in a setting": (shape("switches/vale0/settings/cpus", [[[[0]]]]),
                                  "switches.vale0.settings.cpus[0][0]: nested deeper"),
}


@pytest.mark.parametrize("what", BAD)
def test_a_document_of_the_wrong_shape_is_moved_aside_and_valed_starts_empty(
        tmp_path, caplog, what):
    doc, why = BAD[what]
    text = doc if isinstance(doc, str) else json.dumps(doc)
    (tmp_path / "state.json").write_text(text)
    with caplog.at_level(logging.ERROR, logger="vale.state"):
        state = StateFile(tmp_path).load()
    assert state == State()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("state.json.corrupt-")]
    assert len(aside) == 1 and aside[0].read_text() == text
    assert not (tmp_path / "state.json").exists()
    assert len(caplog.records) == 1
    assert why in caplog.records[0].getMessage() and str(aside[0]) in \
        caplog.records[0].getMessage()


def test_valed_starts_empty_from_a_state_file_of_the_wrong_shape(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps(shape("switches/vale0/mirrors", None)))
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log", state_dir=state)
    try:
        assert daemon("list") == []
        assert [p.name for p in state.iterdir() if p.name.startswith("state.json.corrupt-")]
    finally:
        stop_valed(daemon)
    assert "vale0.mirrors: an object expected" in (tmp_path / "valed.log").read_text()


def test_valed_starts_and_logs_the_field_of_a_file_that_does_not_validate(tmp_path):
    """The case of the issue: one field wrong, deep in a record. valed starts, serves,
    and its log line names the field; the file is aside, whole, for the operator."""
    state = tmp_path / "state"
    state.mkdir()
    text = json.dumps(shape("switches/vale0/ports/eth9/vlan", "access:5000"))
    (state / "state.json").write_text(text)
    daemon = start_valed(str(tmp_path / "v.sock"), tmp_path / "valed.log", state_dir=state)
    try:
        assert daemon("list") == []
        aside = [p for p in state.iterdir() if p.name.startswith("state.json.corrupt-")]
        assert len(aside) == 1 and aside[0].read_text() == text
    finally:
        stop_valed(daemon)
    log = (tmp_path / "valed.log").read_text()
    assert "switches.vale0.ports.eth9.vlan: vlan takes none, access:N" in log
    assert "Traceback" not in log


def test_records_compare_and_copy_as_values():
    import copy
    state = State({"vale0": SwitchConfig(ports={"a": Port({"flood": False})})})
    other = copy.deepcopy(state)
    assert other == state
    other.switches["vale0"].ports["a"].settings["flood"] = True
    assert other != state
