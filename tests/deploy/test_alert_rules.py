"""deploy/prometheus/alerts.yml: valid for promtool, unit-tested, and built on metrics patchgate exposes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.deploy.metric_names import unknown_edge_counters, unknown_names
from tests.deploy.promtool import ROOT, run_promtool

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
RULE_TESTS = PROMETHEUS / "alerts_test.yml"


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout + result.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = run_promtool("test", "rules", RULE_TESTS.name, cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_a_broken_expectation_fails_promtool(tmp_path: Path) -> None:
    """The unit tests can fail: the same file expecting no worker-down alert where one fires."""
    broken = RULE_TESTS.read_text().replace("""      - eval_time: 6m
        alertname: PatchgateWorkerDown
        exp_alerts:""", """      - eval_time: 6m
        alertname: PatchgateWorkerDown
        exp_alerts: []
        unused:""", 1)
    assert broken != RULE_TESTS.read_text()
    (tmp_path / "alerts.yml").write_text(RULES.read_text())
    (tmp_path / "alerts_test.yml").write_text(broken)
    result = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0


def test_the_stale_cache_alert_compares_each_edge_with_its_own_topic(tmp_path: Path) -> None:
    """Joined on nothing instead of the edge's ``topic`` (any verdicts topic getting verdicts), the
    rule pages a quiet tenant's edge: the per-tenant and the notifications cases fail."""
    rules = RULES.read_text()
    unjoined = rules.replace("          and on (topic)\n", "          and on ()\n", 1)
    assert unjoined != rules
    (tmp_path / "alerts.yml").write_text(unjoined)
    (tmp_path / "alerts_test.yml").write_text(RULE_TESTS.read_text())
    result = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert 'instance="edge-fabrikam:9465"' in output and "another tenant's quiet edge is not stale" in output
    assert "notifications do not count" in output


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load(RULE_TESTS)["tests"]:
        for check in case["alert_rule_test"]:
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_the_rules_use_only_metrics_patchgate_exposes() -> None:
    expressions = [rule["expr"] for rule in alert_rules()]
    assert unknown_names(expressions) == set()
    assert unknown_edge_counters(expressions) == set()


def test_the_issues_alerts_are_there() -> None:
    by_name = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    wanted = {
        "PatchgateConsumerLagGrowing": "patchgate_consumer_lag",
        "PatchgateOutboxStuck": "patchgate_outbox_claim_age_seconds",
        "PatchgateDeadLettersRising": "patchgate_deadletter_total",
        "PatchgateEdgeVerdictCacheNotCaughtUp": "patchgate_edge_cache_caught_up",
        "PatchgateEdgeVerdictCacheStale": "verdicts_applied",
        "PatchgateEdgePublisherDropping": "records_dropped_",
        "PatchgateEdgeThreadNotAlive": "patchgate_edge_thread_alive",
        "PatchgateWorkerDown": "up{",
        "PatchgateWorkerNotProcessing": "patchgate_events_in_total",
        "PatchgateWorkerNotReady": "patchgate_ready{",
    }
    for alert, metric in wanted.items():
        assert metric in by_name.get(alert, ""), alert
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical") and rule["annotations"]["summary"]


def test_promtool_checks_the_compose_prometheus_config(tmp_path: Path) -> None:
    """deploy/prometheus/prometheus.yml, with its rule file where compose mounts it, read from here."""
    config = load(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run_promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout + result.stderr
