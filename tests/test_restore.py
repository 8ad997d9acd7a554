"""What the daemon's API layer does with settings and saved state it cannot take: refuse
with an error and change nothing, or, at start, log and go on. No root needed: the saved
switches here have no interface ports."""

from __future__ import annotations

import logging
import os

import pytest

from vale.api import Api
from vale.settings import BY_NAME, SettingError
from vale.state import State, SwitchConfig, load_state
from vale.switch import Switch

parse_cpus = BY_NAME["cpus"].kind.parse


def empty() -> dict:
    return {"version": 1, "switches": {}, "interfaces": {}}


def new_switch(settings: dict | None = None, ports: dict | None = None) -> dict:
    return {"settings": settings or {}, "ports": ports or {}, "fdb": {}, "mirrors": {}}


@pytest.mark.parametrize("text", ["0-100000000", "5-3", "-1", "0,8192", "x", "1-"])
def test_cpu_lists_that_are_not_cpus_are_refused_before_anything_is_built(text):
    with pytest.raises(SettingError, match="CPU numbers"):
        parse_cpus("cpus", text)


def test_cpu_lists():
    assert parse_cpus("cpus", "0,2-3") == [0, 2, 3]
    assert parse_cpus("cpus", "all") == []
    assert parse_cpus("cpus", "auto") == "auto"


NOT_A_CPU = max(os.sched_getaffinity(0)) + 1


@pytest.mark.parametrize("bad", [{"fdb_capacity": 100, "batch": 0},
                                 {"cpus": [NOT_A_CPU], "fdb_capacity": 100},
                                 {"fdb_capacity": 0, "ageing": 5}])
def test_a_refused_setting_changes_none_of_the_others(bad):
    sw = Switch("vale0")
    before = sw.stats()
    with pytest.raises(ValueError):
        sw.configure(**bad)
    after = sw.stats()
    assert after["settings"] == before["settings"]
    assert after["fdb"]["capacity"] == before["fdb"]["capacity"]
    assert sw.cpus == "auto"


def test_saved_state_the_machine_cannot_take_is_logged_and_the_rest_starts(caplog):
    """CPUs this machine lacks are in range (the loader takes them): refused at start.
    What is out of shape (a bad switch name, an interface without a kind) the loader
    refuses: tests/test_state.py."""
    state = State({"vale1": SwitchConfig({"cpus": [NOT_A_CPU], "batch": 64}),
                   "vale2": SwitchConfig({"batch": 32})})
    api = Api()
    try:
        with caplog.at_level(logging.ERROR, logger="vale.api"):
            api.restore(state)
        assert set(api.switches) == {"vale1", "vale2"}
        assert api.switches["vale2"].stats()["settings"]["batch"] == 32
        assert api.switches["vale1"].cpus == "auto"            # refused as a whole
        errors = " ".join(r.getMessage() for r in caplog.records)
        assert "vale1" in errors
    finally:
        for sw in api.switches.values():
            sw.stop()


def test_saved_taps_get_a_usable_mac_and_it_is_saved(tmp_path, caplog, monkeypatch):
    """A TAP of valed's is made with the MAC its record holds. Records from before MACs
    were kept get one; a good one is kept, in colon form. One the kernel would refuse
    at every try (malformed, a group address, zero) the loader refuses (test_state.py);
    records made otherwise get a new one, logged."""
    from vale.names import mac_to_key
    from vale.state import Interface, StateFile

    saved = {"none": None, "dashes": "02-AA-00-00-00-07", "good": "02:00:00:00:00:08",
             "group": "01:00:5e:00:00:01", "zero": "00:00:00:00:00:00", "junk": "tap"}
    doc = empty()
    for name in ("none", "dashes", "good"):
        doc["interfaces"][name] = {"kind": "tap", "switch": "vale0", "netns": None,
                                   "address": None,
                                   **({"mac": saved[name]} if saved[name] else {})}
    doc["interfaces"]["v"] = {"kind": "veth", "switch": "vale0", "peer": "v-p"}
    records = load_state(doc)
    for name in ("group", "zero", "junk"):
        records.interfaces[name] = Interface("tap", "vale0", mac=saved[name])
    made = []
    monkeypatch.setattr("vale.netlink.create_veth", lambda *args: made.append(args))
    state = StateFile(tmp_path)
    api = Api(state)
    with caplog.at_level(logging.ERROR, logger="vale.api"):
        api.restore(records)
    assert made == [("v", "v-p", None, None)]                 # made again, here faked
    macs = {name: state.load().interfaces[name].mac for name in [*saved, "v"]}
    assert macs["good"] == "02:00:00:00:00:08" and macs["dashes"] == "02:aa:00:00:00:07"
    assert macs["v"] is None                                    # a veth keeps its own
    for name in saved:
        key = mac_to_key(macs[name])
        assert key and not key & 1 and macs[name].count(":") == 5, (name, macs[name])
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert all(name in logged for name in ("group", "zero", "junk"))
    assert not any(name in logged for name in ("none", "dashes", "good"))


def test_an_unreadable_sys_is_not_a_missing_interface(monkeypatch):
    """Out of descriptors, /sys cannot be read: that says nothing about the interface,
    and taking its port down (as 'missing') would be wrong."""
    import errno

    from vale import ports

    assert ports.interface_state("vnothere0", 12345) == "missing"

    def no_descriptors(name, attribute):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(ports, "_read", no_descriptors)
    assert ports.interface_state("lo", 1) == "unknown"


def _one_switch(state_dir) -> Api:
    from vale.state import StateFile
    api = Api(StateFile(state_dir))
    doc = empty()
    doc["switches"]["vale1"] = new_switch()
    api.restore(load_state(doc))
    return api


def test_a_change_that_cannot_be_saved_is_said_and_saved_later(tmp_path, monkeypatch):
    import errno
    import json

    from vale.state import StateFile
    api = _one_switch(tmp_path)
    real_save = StateFile.save

    def disk_full(self, doc):
        raise OSError(errno.ENOSPC, "No space left on device")

    try:
        monkeypatch.setattr(StateFile, "save", disk_full)
        reply = api.handle({"op": "set", "args": {"target": "vale1",
                                                  "settings": {"batch": 64}}})
        assert reply["error"]["code"] == "not_saved"
        assert "No space left" in reply["error"]["message"]
        assert api.switches["vale1"].stats()["settings"]["batch"] == 64     # in effect
        monkeypatch.setattr(StateFile, "save", real_save)
        api.housekeeping()                                                # tries again
        saved = json.loads((tmp_path / "state.json").read_text())
        assert saved["switches"]["vale1"]["settings"]["batch"] == 64
    finally:
        api.shutdown()


def test_the_state_file_survives_short_writes_and_leaves_no_temporary_file(tmp_path,
                                                                          monkeypatch):
    import json

    from vale import state
    real_write, real_fsync = os.write, os.fsync
    monkeypatch.setattr(state.os, "write", lambda fd, data: real_write(fd, bytes(data[:7])))
    doc = empty()
    doc["switches"]["vale1"] = new_switch({"batch": 64})
    state.StateFile(tmp_path).save(load_state(doc))
    assert json.loads((tmp_path / "state.json").read_text()) == doc

    def no_sync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(state.os, "fsync", no_sync)
    with pytest.raises(OSError):
        state.StateFile(tmp_path).save(State())
    monkeypatch.setattr(state.os, "fsync", real_fsync)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    assert json.loads((tmp_path / "state.json").read_text()) == doc


def test_settings_kept_for_a_missing_port_are_checked_now(tmp_path):
    """Refused when the interface returns, they made every attach fail, each second."""
    api = Api()
    doc = empty()
    doc["switches"]["vale1"] = new_switch(ports={"vtgone0": {}})
    api.restore(load_state(doc))
    try:
        bad = api.handle({"op": "set", "args": {"target": "vale1:vtgone0",
                                                "settings": {"learn_limit": -1}}})
        assert bad["error"]["code"] == "invalid"
        good = api.handle({"op": "set", "args": {"target": "vale1:vtgone0",
                                                 "settings": {"learn_limit": 10}}})
        assert good["ok"]
        assert api.desired.switches["vale1"].ports["vtgone0"].settings == {"learn_limit": 10}
        odd = api.handle({"op": "mirror_del", "args": {"switch": "vale1", "from": [7]}})
        assert odd["error"]["code"] == "bad_request"
    finally:
        api.shutdown()


def test_static_entries_load_named_as_the_api_names_them():
    """A hand-edited state file's MAC@0 or upper-case MAC must still be removable with
    `valectl fdb del`, which names entries as key_to_mac writes them."""
    from vale.state import load_state
    doc = {"version": 1, "interfaces": {}, "switches": {"vale0": {
        "settings": {}, "ports": {"p": {}}, "mirrors": {},
        "fdb": {"02:00:00:00:00:0A@0": "p", "02:00:00:00:00:0b@7": "p"}}}}
    assert load_state(doc).switches["vale0"].fdb == {"02:00:00:00:00:0a": "p",
                                                     "02:00:00:00:00:0b@7": "p"}
