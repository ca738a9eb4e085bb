"""The Helm chart: `helm lint` passes, and every object `helm template` renders (default and production
values) is valid against the Kubernetes 1.31 schemas (kubernetes-validate, offline, strict: unknown
fields are errors). KEDA's ScaledObject is not in those schemas: it is checked against
tests/deploy/schemas/keda-scaledobject.json, written from KEDA's documentation of the fields the
chart uses. The tests also pin what the deployment relies on: probes, the policy folder mount that
sees ConfigMap updates, secrets as files, non-root read-only containers, the edge's socket sharing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.helm import CHART, PRODUCTION_VALUES, ROOT, render, run_helm

KUBERNETES = "1.31.0"
KEDA_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "keda-scaledobject.json").read_text())
VALUES = {"default": (), "production": (PRODUCTION_VALUES,)}


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in c["env"]}


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_helm_lint_passes(values: tuple[Path, ...]) -> None:
    result = run_helm("lint", "--strict", str(CHART), *[f"--values={v}" for v in values])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_every_rendered_object_is_valid_for_kubernetes_1_31(values: tuple[Path, ...]) -> None:
    objects = render(*values)
    assert len(objects) >= 10
    for obj in objects:
        if obj["kind"] == "ScaledObject":
            jsonschema.validate(obj, KEDA_SCHEMA)
        else:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_the_validator_rejects_what_kubernetes_would() -> None:
    deployment = by_kind(render(), "Deployment")["pg-patchgate-worker"]
    container(deployment, "worker")["livenessProbe"]["httpGet"]["pathh"] = "/livez"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    scaled = by_kind(render(PRODUCTION_VALUES), "ScaledObject")["pg-patchgate-worker"]
    del scaled["spec"]["triggers"][0]["metadata"]["consumerGroup"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, KEDA_SCHEMA)


def test_the_worker_is_probed_spread_and_protected() -> None:
    objects = render()
    worker = by_kind(objects, "Deployment")["pg-patchgate-worker"]
    spec = worker["spec"]["template"]["spec"]
    main = container(worker, "worker")
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert env(main)["PATCHGATE_METRICS_BIND"] == "0.0.0.0"
    assert main["resources"]["requests"] and main["resources"]["limits"]
    assert {c["topologyKey"] for c in spec["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    budget = by_kind(objects, "PodDisruptionBudget")["pg-patchgate-worker"]
    assert budget["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]
    assert "ScaledObject" not in {obj["kind"] for obj in objects}  # KEDA is off by default


def test_production_topics_are_replicated_three_times_with_two_in_sync() -> None:
    from processors.settings import Settings

    worker = container(by_kind(render(PRODUCTION_VALUES), "Deployment")["pg-patchgate-worker"], "worker")
    variables = env(worker)
    assert variables["PATCHGATE_TOPIC_REPLICATION_FACTOR"] == "3"
    assert variables["PATCHGATE_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
    topics = {name: value for name, value in variables.items() if name.startswith("PATCHGATE_TOPIC")}
    settings = Settings.from_env(topics)
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)
    default = env(container(by_kind(render(), "Deployment")["pg-patchgate-worker"], "worker"))
    assert default["PATCHGATE_TOPIC_REPLICATION_FACTOR"] == "1"  # a one-broker evaluation cluster


def test_keda_scales_the_worker_on_its_groups_lag_instead_of_a_replica_count() -> None:
    objects = render(PRODUCTION_VALUES)
    scaled = by_kind(objects, "ScaledObject")["pg-patchgate-worker"]
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "patchgate-worker"
    assert trigger["metadata"]["topic"] == "patchgate.metadata"
    assert scaled["spec"]["scaleTargetRef"]["name"] == "pg-patchgate-worker"
    assert "replicas" not in by_kind(objects, "Deployment")["pg-patchgate-worker"]["spec"]
    result = run_helm("template", "pg", str(CHART), f"--values={PRODUCTION_VALUES}",
                      "--set=worker.autoscaling.enabled=true")
    assert result.returncode != 0 and "exclude each other" in result.stderr


def test_the_policy_is_a_folder_mount_the_kubelet_updates() -> None:
    objects = render()
    policy = by_kind(objects, "ConfigMap")["pg-patchgate-policy"]
    for name in ("policy.toml", "exchange-builds.csv", "exchange-lifecycle.csv"):
        assert policy["data"][name].strip() == (ROOT / "processors" / "data" / name).read_text().strip()
    for deployment in by_kind(objects, "Deployment").values():
        main = deployment["spec"]["template"]["spec"]["containers"][0]
        mount = next(m for m in main["volumeMounts"] if m["name"] == "policy")
        assert "subPath" not in mount  # a subPath mount never sees a ConfigMap update
        assert env(main)["PATCHGATE_POLICY_FILE"] == f"{mount['mountPath']}/policy.toml"
        assert env(main)["PATCHGATE_CATALOG_FILE"] == f"{mount['mountPath']}/exchange-builds.csv"


def test_secrets_come_from_secrets_never_from_plain_values() -> None:
    objects = render(PRODUCTION_VALUES)
    deployments = by_kind(objects, "Deployment")
    worker = container(deployments["pg-patchgate-worker"], "worker")
    assert env(worker)["PATCHGATE_REDIS_URL"] == {"secretKeyRef": {"name": "patchgate-redis", "key": "url"}}
    assert env(worker)["PATCHGATE_KAFKA_CONFIG"] == "/etc/patchgate/kafka/client.properties"
    volumes = {v["name"]: v for v in deployments["pg-patchgate-worker"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["kafka-config"]["secret"]["secretName"] == "patchgate-kafka"
    api_volumes = {v["name"]: v for v in deployments["pg-patchgate-api"]["spec"]["template"]["spec"]["volumes"]}
    assert api_volumes["api-tokens"]["secret"]["secretName"] == "patchgate-api-tokens"
    assert env(container(deployments["pg-patchgate-api"], "api"))["PATCHGATE_API_TOKENS_FILE"] == \
        "/etc/patchgate/api/tokens.toml"
    assert "Secret" not in {obj["kind"] for obj in objects}  # every one is the operator's


def test_a_properties_file_given_inline_becomes_a_secret() -> None:
    objects = render(sets=("kafka.config.properties=security.protocol=SASL_SSL",))
    secret = by_kind(objects, "Secret")["pg-patchgate-kafka"]
    assert secret["stringData"]["client.properties"] == "security.protocol=SASL_SSL"


@pytest.mark.parametrize("values", VALUES.values(), ids=VALUES.keys())
def test_patchgate_containers_run_non_root_and_read_only(values: tuple[Path, ...]) -> None:
    for deployment in by_kind(render(*values), "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        for c in pod["containers"] + pod.get("initContainers", []):
            if c["name"] == "postfix":
                continue  # the example's MTA image is the operator's
            context = {**pod["securityContext"], **c.get("securityContext", {})}
            assert context["runAsNonRoot"] is True and context.get("runAsUser", 0) != 0, c["name"]
            assert context["readOnlyRootFilesystem"] is True, c["name"]
            assert context["allowPrivilegeEscalation"] is False, c["name"]
            assert context["capabilities"]["drop"] == ["ALL"], c["name"]


def test_the_edge_shares_its_socket_with_postfix_through_an_empty_dir() -> None:
    edge = by_kind(render(PRODUCTION_VALUES), "Deployment")["pg-patchgate-edge"]
    pod = edge["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == 102 and pod["securityContext"]["supplementalGroups"] == [102]
    socket_volume = next(v for v in pod["volumes"] if v["name"] == "milter-socket")
    assert "emptyDir" in socket_volume
    sidecar, postfix = container(edge, "edge"), container(edge, "postfix")
    assert "--listen=unix:/run/patchgate/milter/milter.sock" in sidecar["args"]
    assert "--socket-group=102" in sidecar["args"]
    for c in (sidecar, postfix, pod["initContainers"][0]):
        assert {"name": "milter-socket", "mountPath": "/run/patchgate"} in c["volumeMounts"]


def test_network_policies_select_every_component() -> None:
    objects = render(PRODUCTION_VALUES)
    policies = by_kind(objects, "NetworkPolicy")
    selected = {p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in policies.values()}
    assert selected == {"worker", "api", "notify", "edge"}
    for name, policy in policies.items():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert {53, 9092} <= ports
        # the edge follows verdicts from Kafka and never reads Redis: no way out to it
        assert (6380 in ports) == (name != "pg-patchgate-edge"), name
    notify_ports = {p["port"] for rule in policies["pg-patchgate-notify"]["spec"]["egress"] for p in rule["ports"]}
    assert 443 in notify_ports


def test_the_oidc_token_endpoint_port_is_let_out_to_every_component() -> None:
    """With OAUTHBEARER every component asks the identity provider for tokens: its port goes out, to any address."""
    policies = by_kind(render(PRODUCTION_VALUES, sets=("kafka.tokenEndpointPorts={443,8443}",)), "NetworkPolicy")
    for name, policy in policies.items():
        rules = [rule for rule in policy["spec"]["egress"] if {p["port"] for p in rule["ports"]} == {443, 8443}]
        assert len(rules) == 1 and "to" not in rules[0], name
    default = by_kind(render(PRODUCTION_VALUES), "NetworkPolicy")
    worker_ports = {p["port"] for rule in default["pg-patchgate-worker"]["spec"]["egress"] for p in rule["ports"]}
    assert 443 not in worker_ports  # nothing beyond Kafka, Redis and DNS unless asked for
