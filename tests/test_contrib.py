"""What operators import beside the metrics (contrib/): the alert rules, checked and unit
tested by promtool, and the Grafana dashboard, whose every PromQL expression promtool must
parse and whose every metric name a running valed must export. No root needed; promtool
comes with Debian's prometheus (the Makefile's DEBS), and the tests that need it skip
without it."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, start_valed, stop_valed

ALERTS = ROOT / "contrib" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "contrib" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "vale.json"

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="needs promtool (Debian: prometheus)")

# What Grafana puts in for its variables before a query reaches Prometheus: "All" is the
# variables' allValue (.*), $__rate_interval a duration.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$instance": ".*", "$switch": "vale0",
                     "$port": ".*"}
# Series Prometheus makes itself for every target, not valed's to export.
PROMETHEUS_SERIES = {"up"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)


def alert_rules() -> list[dict]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"]
            for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(dash: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    found = []
    for panel in dash["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_expressions(dash: dict) -> list[str]:
    """Every query in the dashboard as Prometheus receives it: the panels' targets and the
    variables' label_values() selectors, Grafana's variables put in."""
    queries = [target["expr"] for panel in panels(dash) for target in panel.get("targets", [])]
    for variable in dash["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable["query"]["query"])
            assert match, variable["query"]
            queries.append(match.group(1))
    for name, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        queries = [q.replace(name, value) for q in queries]
    assert not [q for q in queries if "$" in q], "a variable the test does not know"
    return queries


# -- metric names in PromQL ---------------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
            "or", "unless", "offset", "inf", "nan"}


def metric_names(promql: str) -> set[str]:
    """The metric names an expression selects: what is left of its identifiers once
    strings, label matchers, ranges, grouping lists, functions and keywords are gone."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', promql)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", text):
        if match.group(2) is None and match.group(1).lower() not in KEYWORDS:
            names.add(match.group(1))
    return names


def test_metric_names_finds_what_an_expression_selects():
    assert metric_names('sum by (switch, port) (rate(vale_port_drops_total{reason="x"}[5m]))'
                        ' / on (switch) group_left vale_fdb_entries > bool 0.5') == {
        "vale_port_drops_total", "vale_fdb_entries"}
    assert metric_names('histogram_quantile(0.9, sum by (le) (rate(a_bucket{x=~"b|c"}[1m])))'
                        " and time() - b offset 5m") == {"a_bucket", "b"}
    assert metric_names('label_replace(up, "dst", "$1", "src", "(.*)")') == {"up"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """The sample names a running valed exports: every family it announces (# TYPE, with
    or without samples yet), by its type's sample names."""
    tmp = tmp_path_factory.mktemp("valed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    daemon = start_valed(str(tmp / "valed.sock"), tmp / "valed.log",
                         extra=("--metrics", f"127.0.0.1:{port}"))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            text = reply.read().decode()
    finally:
        stop_valed(daemon)
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "summary": ("", "_sum", "_count")}
    names = {family.name + suffix for family in text_string_to_metric_families(text)
             for suffix in suffixes.get(family.type, ("",))}
    assert "vale_port_drops_total" in names and "vale_switch_batch_size_bucket" in names
    return names


# -- alert rules ----------------------------------------------------------------------------

@needs_promtool
def test_promtool_checks_the_alert_rules():
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass():
    result = promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_promtool_unit_tests_fail_when_an_alert_breaks(tmp_path):
    """The unit tests can fail: with every alert's for: made 30m, each alert's test that
    expects it to fire fails."""
    broken = re.sub(r"(?m)^(\s+for: )\d+m$", r"\g<1>30m", ALERTS.read_text())
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts_test.yml").write_text(ALERT_TESTS.read_text())
    result = promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert result.returncode != 0
    for rule in alert_rules():
        assert f"alertname: {rule['alert']}," in result.stderr, rule["alert"]


def test_every_alert_has_a_for_a_summary_and_tests_that_fire_it_and_do_not():
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fired: dict[str, int] = {}
    quiet: dict[str, int] = {}
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            counts = fired if check["exp_alerts"] else quiet
            counts[check["alertname"]] = counts.get(check["alertname"], 0) + 1
    rules = alert_rules()
    assert len(rules) >= 6
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), name
        assert fired.get(name) and quiet.get(name), f"{name}: a test that fires it and one not"
    assert set(fired) | set(quiet) == {rule["alert"] for rule in rules}


def test_the_issue_s_alerts_are_all_there():
    """A port down or missing, drops by reason, a MAC table near capacity, MAC moves and
    bans, capture losses, valed restarted."""
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    wanted = {"ValePortDown": "vale_port_up", "ValePortDropping": "vale_port_drops_total",
              "ValeMacTableNearlyFull": "vale_fdb_capacity",
              "ValeMacMoves": "vale_fdb_moved_total", "ValeMacBans": "learn_banned",
              "ValeCaptureLosses": "vale_port_capture_lost_packets_total",
              "ValedRestarted": "process_start_time_seconds"}
    for alert, needle in wanted.items():
        assert needle in exprs[alert], alert


def test_alerts_name_only_metrics_valed_exports(exported):
    for rule in alert_rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= exported | PROMETHEUS_SERIES, (rule["alert"], names - exported)


# -- the dashboard --------------------------------------------------------------------------

PANEL_TYPES = {"row", "timeseries", "stat", "table", "gauge", "bargauge", "heatmap", "text"}


def test_the_dashboard_has_grafana_s_shape():
    """What Grafana's dashboard model (schemaVersion 39) needs to import it: a title and
    uid, panels with unique ids, a known type, a place on the 24-column grid that no other
    panel takes, and targets with unique refIds and a Prometheus data source; a data source
    variable and switch and port variables."""
    dash = dashboard()
    assert dash["title"] and re.fullmatch(r"[\w-]{1,40}", dash["uid"])
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert dash["time"] == {"from": "now-1h", "to": "now"}
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("switch", "port"):
        assert variables[name]["type"] == "query" and variables[name]["multi"]
        assert variables[name]["datasource"]["uid"] == "${datasource}"
    ids = [panel["id"] for panel in panels(dash)]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    taken: set[tuple[int, int]] = set()
    for panel in panels(dash):
        assert panel["type"] in PANEL_TYPES and panel["title"], panel
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in "hwxy")
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and "legendFormat" in target, panel["title"]


def test_the_dashboard_shows_what_the_issue_asks():
    """Throughput and frames per port, drops by reason, floods, MAC table size and churn,
    forwarding batches, capture; by switch and port."""
    exprs = "\n".join(dashboard_expressions(dashboard()))
    for needle in ("vale_port_receive_bytes_total", "vale_port_transmit_bytes_total",
                   "vale_port_receive_packets_total", "vale_port_transmit_packets_total",
                   "sum by (reason) (rate(vale_port_drops_total",
                   "vale_port_flood_packets_total", "vale_fdb_entries",
                   "vale_fdb_learned_total", "vale_fdb_moved_total", "vale_fdb_evicted_total",
                   "vale_switch_batches_total", "vale_switch_batch_size_bucket",
                   "vale_port_capture_lost_packets_total"):
        assert needle in exprs, needle
    raw = DASHBOARD.read_text()
    assert 'switch=~\\"$switch\\"' in raw and 'port=~\\"$port\\"' in raw


@needs_promtool
def test_promtool_parses_every_dashboard_expression(tmp_path):
    """promtool has no bare 'parse': each expression goes in as a recording rule, which
    `check rules` parses (and would name the one it cannot)."""
    exprs = dashboard_expressions(dashboard())
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"vale:dashboard_query_{i}", "expr": expr} for i, expr in enumerate(exprs)]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


@needs_promtool
def test_promtool_would_refuse_a_broken_expression(tmp_path):
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "x:y", "expr": "sum by (port (rate(vale_port_drops_total[5m]))"}]}]}))
    assert promtool("check", "rules", str(path)).returncode != 0


def test_the_dashboard_names_only_metrics_valed_exports(exported):
    for expr in dashboard_expressions(dashboard()):
        names = metric_names(expr)
        assert names, expr
        assert names <= exported, (expr, names - exported)


def contrib_files() -> list[Path]:
    return [ALERTS, ALERT_TESTS, DASHBOARD]


def test_docs_point_at_the_alerts_and_the_dashboard():
    page = (ROOT / "docs" / "metrics.md").read_text()
    for path in contrib_files():
        assert str(path.relative_to(ROOT)) in page, path
