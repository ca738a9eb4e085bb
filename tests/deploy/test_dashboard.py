"""deploy/grafana/patchgate.json: a Grafana dashboard whose every query parses and uses real metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.metric_names import unknown_edge_counters, unknown_names
from tests.deploy.promtool import ROOT, run_promtool

DASHBOARD = ROOT / "deploy" / "grafana" / "patchgate.json"
# Grafana's range variables, given a value promtool can parse
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict[str, Any]]:
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel["targets"]]


def as_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def test_the_dashboard_is_grafana_json_with_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41 and board["uid"] == "patchgate"
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    reference = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    for panel in panels():
        assert panel["datasource"] == reference and panel["targets"], panel["title"]
        assert all(target["datasource"] == reference for target in panel["targets"]), panel["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_parses(tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule of a synthetic rule file."""
    rules = [{"record": f"dashboard:query_{n}", "expr": as_promql(expr)} for n, expr in enumerate(expressions())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout + result.stderr


def test_a_query_that_does_not_parse_fails_the_check(tmp_path: Path) -> None:
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (topic (rate(patchgate_events_in_total[1m]))"}]}]}))
    assert run_promtool("check", "rules", str(path)).returncode != 0


def test_the_queries_use_only_metrics_patchgate_exposes() -> None:
    assert unknown_names(expressions()) == set()
    assert unknown_edge_counters(expressions()) == set()
    assert unknown_names(["rate(patchgate_made_up_total[1m])"]) == {"patchgate_made_up_total"}
    assert unknown_edge_counters(['x{counter=~"throttled|made_up"}']) == {"made_up"}


def test_the_dashboard_shows_what_operators_look_at() -> None:
    used = " ".join(expressions())
    for metric in ("patchgate_events_in_total", "patchgate_events_out_total", "patchgate_consumer_lag",
                   "patchgate_verdicts_total", "patchgate_deadletter_total", "decisions_fail_open"):
        assert metric in used, metric
    titles = {panel["title"] for panel in panels()}
    assert {"Records in per topic", "Records out per topic", "Consumer lag", "Enforcement replies per code",
            "Edge fail-open", "Dead letters by reason"} <= titles
    replies = next(p for p in panels() if p["title"] == "Enforcement replies per code")["targets"][0]["expr"]
    assert re.search(r'"450 4\.7\.230", "counter", "throttled"', replies)
    assert re.search(r'"550 5\.7\.230", "counter", "blocked"', replies)
