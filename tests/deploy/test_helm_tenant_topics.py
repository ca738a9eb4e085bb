"""The Helm chart in the per-tenant topic mode (``kafka.metadataTopicMode``): every component reads
the mode, the edge example serves its config's one tenant (and its annotations name that tenant's
topics), KEDA scales on the worker group's total lag without a fixed topic, the network policies do
not change, and a wrong mode or edge config stops the rendering with one clear line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from edge.config import load_config
from edge.settings import EdgeSettings, EdgeTopics
from processors.settings import TENANT_ID_PATTERN, Settings
from tests.deploy.helm import CHART, PRODUCTION_VALUES, render, run_helm

KUBERNETES = "1.31.0"
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda-scaledobject.json").read_text())
PER_TENANT = ("kafka.metadataTopicMode=per-tenant",)
COMPONENTS = {"pg-patchgate-worker": "worker", "pg-patchgate-api": "api", "pg-patchgate-notify": "notify",
              "pg-patchgate-edge": "edge"}
TWO_TENANTS = ('[[connector]]\nid = "a"\ntenant_id = "contoso"\ntype = "OnPremises"\nclient_ips = ["10.0.0.0/8"]\n'
               '[[connector]]\nid = "b"\ntenant_id = "fabrikam"\ntype = "OnPremises"\nclient_ips = ["10.1.0.0/16"]\n')


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def main_env(deployment: dict[str, Any]) -> dict[str, Any]:
    """The env of the Deployment's patchgate container (the first one)."""
    main = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in main["env"]}


def topic_env(env: dict[str, Any]) -> dict[str, str]:
    """The topic settings of a rendered env, as the settings objects read them."""
    return {name: value for name, value in env.items()
            if name.startswith("PATCHGATE_TOPIC_") or name == "PATCHGATE_METADATA_TOPIC_MODE"}


def render_error(*sets: str, values: tuple[Path, ...] = ()) -> str:
    result = run_helm("template", "pg", str(CHART), *[f"--values={v}" for v in values],
                      *[f"--set={s}" for s in sets])
    assert result.returncode != 0, "the chart rendered"
    return result.stderr


def test_every_component_runs_in_the_shared_mode_by_default() -> None:
    deployments = by_kind(render(PRODUCTION_VALUES), "Deployment")
    assert set(deployments) == set(COMPONENTS)
    for deployment in deployments.values():
        assert main_env(deployment)["PATCHGATE_METADATA_TOPIC_MODE"] == "shared"


def test_every_component_reads_the_per_tenant_mode_and_the_shared_topic_names() -> None:
    deployments = by_kind(render(PRODUCTION_VALUES, sets=PER_TENANT), "Deployment")
    for name, component in COMPONENTS.items():
        env = topic_env(main_env(deployments[name]))
        assert env["PATCHGATE_METADATA_TOPIC_MODE"] == "per-tenant", component
        assert (env["PATCHGATE_TOPIC_METADATA"], env["PATCHGATE_TOPIC_VERDICTS"]) == (
            "patchgate.metadata", "patchgate.verdicts"), component
        if component == "edge":
            assert EdgeSettings.from_env(env).per_tenant_topics
        else:  # the worker, the API and the notifier read processors.settings.Settings
            assert Settings.from_env(env).per_tenant_topics, component


def test_the_edge_example_serves_its_config_s_tenant_and_names_its_topics(tmp_path: Path) -> None:
    """What the edge derives from the rendered env and config is what its annotations say."""
    objects = render(PRODUCTION_VALUES, sets=PER_TENANT)
    edge = by_kind(objects, "Deployment")["pg-patchgate-edge"]
    config = tmp_path / "edge.toml"
    config.write_text(by_kind(objects, "ConfigMap")["pg-patchgate-edge"]["data"]["edge.toml"])
    tenants = {connector.tenant_id for connector in load_config(config).connectors}
    topics = EdgeSettings.from_env(topic_env(main_env(edge))).edge_topics(tenants)
    assert topics == EdgeTopics("patchgate.metadata.contoso", "patchgate.verdicts.contoso", tenant="contoso")
    assert edge["metadata"]["annotations"] == {"patchgate.io/metadata-topic": topics.metadata,
                                               "patchgate.io/verdicts-topic": topics.verdicts}
    shared = by_kind(render(PRODUCTION_VALUES), "Deployment")["pg-patchgate-edge"]
    assert shared["metadata"]["annotations"] == {"patchgate.io/metadata-topic": "patchgate.metadata",
                                                 "patchgate.io/verdicts-topic": "patchgate.verdicts"}


def test_keda_scales_on_the_group_s_lag_over_every_tenant_topic() -> None:
    objects = render(PRODUCTION_VALUES, sets=PER_TENANT)
    scaled = by_kind(objects, "ScaledObject")["pg-patchgate-worker"]
    jsonschema.validate(scaled, KEDA_SCHEMA)
    (trigger,) = scaled["spec"]["triggers"]
    worker = main_env(by_kind(objects, "Deployment")["pg-patchgate-worker"])
    assert trigger["type"] == "kafka" and trigger["metadata"] == {
        "bootstrapServers": "pkc-12345.eu-west-1.aws.confluent.cloud:9092",
        "consumerGroup": worker["PATCHGATE_CONSUMER_GROUP"],  # no topic: every topic of the worker group
        "lagThreshold": "5000",
        "activationLagThreshold": "0",
        "offsetResetPolicy": "earliest",
    }
    assert trigger["authenticationRef"] == {"name": "patchgate-kafka-keda"}
    shared = by_kind(render(PRODUCTION_VALUES), "ScaledObject")["pg-patchgate-worker"]["spec"]["triggers"][0]
    assert shared["metadata"] == {**trigger["metadata"], "topic": "patchgate.metadata"}


def test_the_keda_schema_refuses_what_keda_refuses_or_ignores_without_a_topic() -> None:
    scaled = by_kind(render(PRODUCTION_VALUES, sets=PER_TENANT), "ScaledObject")["pg-patchgate-worker"]
    metadata = scaled["spec"]["triggers"][0]["metadata"]
    for extra in ({"limitToPartitionsWithLag": "true"}, {"partitionLimitation": "0-3"}, {"topic": ""}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**scaled, "spec": {**scaled["spec"], "triggers": [
                {**scaled["spec"]["triggers"][0], "metadata": {**metadata, **extra}}]}}, KEDA_SCHEMA)


def test_the_network_policies_are_the_same_in_both_modes() -> None:
    """Tenant topics live on the same brokers: nothing to open or close."""
    shared = by_kind(render(PRODUCTION_VALUES), "NetworkPolicy")
    assert set(shared) == {f"pg-patchgate-{c}" for c in COMPONENTS.values()}
    assert by_kind(render(PRODUCTION_VALUES, sets=PER_TENANT), "NetworkPolicy") == shared


@pytest.mark.parametrize("values", [(), (PRODUCTION_VALUES,)], ids=["default", "production"])
def test_the_per_tenant_chart_lints_and_is_valid_for_kubernetes(values: tuple[Path, ...]) -> None:
    result = run_helm("lint", "--strict", str(CHART), *[f"--values={v}" for v in values], f"--set={PER_TENANT[0]}")
    assert result.returncode == 0, result.stdout + result.stderr
    for obj in render(*values, sets=PER_TENANT):
        if obj["kind"] == "ScaledObject":
            jsonschema.validate(obj, KEDA_SCHEMA)
        else:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)


@pytest.mark.parametrize("mode", ["tenant", "Per-Tenant", "per_tenant", ""])
def test_an_unknown_mode_stops_the_rendering(mode: str) -> None:
    error = render_error(f"kafka.metadataTopicMode={mode}")
    assert f'kafka.metadataTopicMode must be shared or per-tenant, got "{mode}"' in error


def test_the_mode_has_one_name() -> None:
    error = render_error("extraEnv.PATCHGATE_METADATA_TOPIC_MODE=per-tenant")
    assert "set kafka.metadataTopicMode, not extraEnv.PATCHGATE_METADATA_TOPIC_MODE" in error


@pytest.mark.parametrize(("config", "message"), [
    (TWO_TENANTS, "an edge serves one tenant, edgeExample.config's connectors name 2 (contoso, fabrikam)"),
    ('[edge]\nname = "e"\n', "an edge serves one tenant, edgeExample.config's connectors name 0 (none)"),
    ('[[connector]]\nid = "a"\ntenant_id = "con@toso"\ntype = "OnPremises"\n',
     "edgeExample.config's tenant_id \"con@toso\" is no tenant id the workers admit"),
])
def test_a_per_tenant_edge_example_naming_no_single_valid_tenant_stops_the_rendering(
        tmp_path: Path, config: str, message: str) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(json.dumps({"kafka": {"metadataTopicMode": "per-tenant"},
                                  "edgeExample": {"enabled": True, "config": config}}))
    assert f"kafka.metadataTopicMode=per-tenant: {message}" in render_error(values=(values,))
    shared = tmp_path / "shared.yaml"
    shared.write_text(json.dumps({"edgeExample": {"enabled": True, "config": config}}))
    assert "pg-patchgate-edge" in by_kind(render(shared), "Deployment")  # the shared mode takes any tenants


def test_the_chart_admits_the_tenant_ids_the_workers_admit() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert re.findall(r'regexMatch "\^(.*?)\$"', helpers) == [TENANT_ID_PATTERN]
