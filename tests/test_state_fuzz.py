"""The state loader against random documents: of the right shape, they load as records that
save back as the same document; of any other shape (a field replaced by random JSON, a key
dropped, added or renamed, arbitrary JSON, arbitrary bytes), the loader raises StateError
naming a field, or loads a state that saves and loads back equal. Never another exception:
at start that would be a crash loop."""

from __future__ import annotations

import json
import logging
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vale import settings as vs
from vale.state import State, StateError, StateFile, load_state

SWITCHES = ["vale0", "vale1", "vale_lab"]
PORTS = ["p1", "p2", "eth9", "tap0", "v0", "v0-p", "vm0", "eth0.10", "x"]

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def setting_value(setting: vs.Setting) -> st.SearchStrategy[Any]:
    """Values of a setting as the state file holds them (its parsed, canonical form)."""
    kind = setting.kind
    if isinstance(kind, vs.Flag):
        return st.booleans()
    if isinstance(kind, vs.Integer):
        return st.integers(kind.low, kind.high)
    if isinstance(kind, vs.Seconds):
        return st.floats(0, kind.high, allow_nan=False)
    if isinstance(kind, vs.CpuList):
        return st.just(vs.AUTO_CPU) | st.lists(st.integers(0, vs.MAX_CPUS - 1), max_size=4)
    if isinstance(kind, vs.Vlan):
        vlan = st.integers(1, 4094)
        return st.just("none") | vlan.map(lambda v: f"access:{v}") | st.lists(
            vlan, min_size=1, max_size=4, unique=True).map(
            lambda vs_: "trunk:" + ",".join(map(str, sorted(vs_))))
    if isinstance(kind, vs.Choice):
        return st.sampled_from(kind.values)
    if isinstance(kind, vs.MacList):
        unicast = st.binary(min_size=6, max_size=6).filter(lambda b: not b[0] & 1)
        return st.lists(unicast, max_size=3, unique=True).map(
            lambda macs: sorted(":".join(f"{x:02x}" for x in m) for m in macs))
    raise AssertionError(f"no strategy for {setting.name}")


def settings_of(scope: str) -> st.SearchStrategy[dict[str, Any]]:
    known = vs.of_scope(scope)
    return st.fixed_dictionaries({}, optional={name: setting_value(s)
                                               for name, s in known.items()})


def consistent_vlan(port: dict[str, Any]) -> dict[str, Any]:
    """A port's native dropped when its vlan would not take it (the API keeps them so)."""
    if "native" in port:
        try:
            vs.merge_vlan(("none", 0), port)
        except ValueError:
            del port["native"]
    return port


macs = st.integers(1, (1 << 48) - 1).filter(lambda k: not k & 1).map(
    lambda k: ":".join(f"{b:02x}" for b in k.to_bytes(6, "little")))
netns = st.none() | st.sampled_from(["ns1", "vx h", "a.b"])
addresses = st.none() | st.sampled_from(["198.18.0.1/24", "2001:db8::1/64", "198.19.0.9/1"])
accounts = st.none() | st.sampled_from(["alice", "1000", "vale", "_x.y-z$"])


@st.composite
def good_documents(draw: st.DrawFn) -> dict[str, Any]:
    """Documents as valed writes them, with the records agreeing with each other."""
    where = draw(st.dictionaries(st.sampled_from(PORTS), st.sampled_from(SWITCHES),
                                 max_size=6))
    switches: dict[str, Any] = {}
    for port, switch in where.items():
        sw = switches.setdefault(switch, {"settings": draw(settings_of("switch")),
                                          "ports": {}, "fdb": {}, "mirrors": {}})
        sw["ports"][port] = consistent_vlan(draw(settings_of("attach")))
    for sw in switches.values():
        ports = list(sw["ports"])
        for mac in draw(st.lists(macs, max_size=3, unique=True)):
            vlan = draw(st.integers(0, 4094))
            sw["fdb"][f"{mac}@{vlan}" if vlan else mac] = draw(st.sampled_from(ports))
        if len(ports) > 1:
            target = draw(st.sampled_from(ports))
            for source in draw(st.lists(st.sampled_from([p for p in ports if p != target]),
                                        max_size=2, unique=True)):
                sw["mirrors"][source] = {"to": target,
                                         "direction": draw(st.sampled_from(["rx", "tx",
                                                                            "both"]))}
    interfaces: dict[str, Any] = {}
    for port, switch in where.items():
        kind = draw(st.sampled_from([None, "tap", "veth", "persistent_tap"]))
        if kind == "tap":
            space = draw(netns)
            interfaces[port] = {"kind": kind, "switch": switch, "netns": space,
                                "address": draw(addresses) if space else None,
                                "mac": draw(st.none() | macs)}
        elif kind == "veth":
            space = draw(netns)
            peer = draw(st.sampled_from(["peer0", "peer1", *PORTS]))
            if peer == port or peer in interfaces or (
                    space is None and (where.get(peer) == switch or peer in where)):
                peer = f"{port[:10]}-q"
            interfaces[port] = {"kind": kind, "switch": switch, "peer": peer, "netns": space,
                                "address": draw(addresses)}
        elif kind == "persistent_tap":
            interfaces[port] = {"kind": kind, "switch": switch, "owner": draw(accounts),
                                "group": draw(accounts)}
    # veth peers must not name another record (the loop above only saw earlier ones)
    for name, record in interfaces.items():
        if record["kind"] == "veth" and record["peer"] in interfaces:
            record["peer"] = f"{name[:10]}-q"
    return {"version": 1, "switches": switches, "interfaces": interfaces}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-10 ** 500, 10 ** 500)
    | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=20)


def paths(doc: Any, here: tuple = ()) -> list[tuple]:
    """Every place in a document, as a tuple of keys and indexes."""
    found = [here]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else ()
    for key, value in items:
        found += paths(value, (*here, key))
    return found


@st.composite
def bad_documents(draw: st.DrawFn) -> Any:
    """A good document with one place changed: replaced by random JSON, dropped, given an
    extra key, or renamed."""
    doc = draw(good_documents())
    path = draw(st.sampled_from(paths(doc)))
    how = draw(st.sampled_from(["replace", "drop", "add", "rename"]))
    if not path:
        return draw(json_values) if how == "replace" else doc
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    if how == "replace":
        parent[last] = draw(json_values)
    elif how == "drop":
        del parent[last]
    elif how == "add" and isinstance(parent[last], dict):
        parent[last][draw(st.text(max_size=8))] = draw(json_values)
    elif how == "rename" and isinstance(parent, dict):
        parent[draw(st.text(max_size=16))] = parent.pop(last)
    return doc


def loads_or_refuses(doc: Any) -> State | None:
    """The property: StateError naming a field, or records that save and load back
    equal. Any other exception fails the test."""
    try:
        state = load_state(doc)
    except StateError as exc:
        assert exc.where and str(exc).startswith(exc.where + ": ")
        return None
    saved = json.loads(json.dumps(state.to_json()))
    assert load_state(saved) == state
    return state


@FUZZ
@given(st.sampled_from(vs.SETTINGS), json_values | st.sampled_from(
    [10 ** 400, -10 ** 400, float("nan"), float("inf"), -0.0, "", " 1 ", "\u0663", "1e999",
     "access:\u0661", "trunk:1,,2", "0-8191", [True], [10 ** 30]]))
def test_every_setting_takes_any_json_or_refuses_it_with_a_setting_error(setting, value):
    """What the state loader and the API both rely on: a value a setting refuses is a
    SettingError (a ValueError) naming it, never another exception."""
    try:
        setting.parse(value)
    except vs.SettingError as exc:
        assert setting.name in str(exc)


@FUZZ
@given(good_documents())
def test_a_good_document_loads_as_records_that_save_as_it(doc):
    doc = json.loads(json.dumps(doc))          # as read from disk
    assert load_state(doc).to_json() == doc


@FUZZ
@given(bad_documents())
def test_a_changed_document_loads_equal_or_is_refused_naming_the_field(doc):
    loads_or_refuses(doc)


@FUZZ
@given(json_values)
def test_any_json_is_refused_or_loaded(doc):
    loads_or_refuses(doc)


@FUZZ
@given(st.binary(max_size=200) | bad_documents().map(lambda d: json.dumps(d).encode()))
def test_the_file_loader_never_raises_and_moves_a_bad_file_aside(tmp_path_factory, raw):
    where = tmp_path_factory.mktemp("state")
    (where / "state.json").write_bytes(raw)
    logging.getLogger("vale.state").disabled = True      # thousands of lines otherwise
    try:
        state = StateFile(where).load()
    finally:
        logging.getLogger("vale.state").disabled = False
    aside = [p for p in where.iterdir() if p.name.startswith("state.json.corrupt-")]
    if aside:
        assert state == State() and aside[0].read_bytes() == raw
    else:
        assert (where / "state.json").read_bytes() == raw
