"""The Helm chart's Redis over TLS with private files: a CA (``redis.caSecret``/``caKey``) and a client
certificate (``redis.clientCertSecret``) mounted read-only in one folder of every component that uses
Redis (worker, API, notifier; never the edge), the URL's ``ssl_*`` parameters naming exactly the
mounted files, nothing mounted when unset, and an inline URL that cannot use the files (plain-text
scheme, missing or other path, a path naming an absent mount) stopping the rendering with one line
that never shows the URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import pytest

from processors.state.urls import CLUSTER_SCHEMES, SENTINEL_SCHEMES, SINGLE_SCHEMES, TLS_QUERY
from tests.deploy.helm import CHART, PRODUCTION_VALUES, render, run_helm

KUBERNETES = "1.31.0"
TLS_DIR = "/etc/patchgate/redis-tls"
CA_QUERY = f"ssl_ca_certs={TLS_DIR}/ca.crt"
CLIENT_QUERY = f"ssl_certfile={TLS_DIR}/tls.crt&ssl_keyfile={TLS_DIR}/tls.key"
ALL_SCHEMES = SINGLE_SCHEMES + CLUSTER_SCHEMES + SENTINEL_SCHEMES
TLS_SCHEMES = [scheme for scheme in ALL_SCHEMES if scheme.startswith("rediss")]
PLAIN_SCHEMES = [scheme for scheme in ALL_SCHEMES if not scheme.startswith("rediss")]
TARGETS = {"rediss": "r:6380/0", "rediss+cluster": "r0:6380,r1:6380", "rediss+sentinel": "s0:26379,s1:26379/mymaster/0"}
REDIS_USERS = {"pg-patchgate-worker", "pg-patchgate-api", "pg-patchgate-notify"}
WITH_EDGE = {"edgeExample": {"enabled": True}}


def values_file(tmp_path: Path, redis: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
    """A values file (not --set: Cluster URLs hold commas) with these redis values."""
    path = tmp_path / "values.yaml"
    path.write_text(json.dumps({"redis": redis, **(extra or {})}))
    return path


def deployments(*values: Path) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in render(*values) if obj["kind"] == "Deployment"}


def pod_parts(deployment: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The main container's env, its volume mounts and the pod's volumes, each by name."""
    pod = deployment["spec"]["template"]["spec"]
    main = pod["containers"][0]
    env = {item["name"]: item.get("value", item.get("valueFrom")) for item in main["env"]}
    return (env, {m["name"]: m for m in main["volumeMounts"]}, {v["name"]: v for v in pod["volumes"]})


def mounted_files(mount: dict[str, Any], volume: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Path in the container -> (Secret, key) of each file the projected volume puts there."""
    return {f"{mount['mountPath']}/{item['path']}": (source["secret"]["name"], item["key"])
            for source in volume["projected"]["sources"] for item in source["secret"]["items"]}


def tls_files_named(url: str) -> dict[str, str]:
    """The URL's ssl_* parameters as processors.state.urls reads them (last value wins)."""
    query = {name: values[-1] for name, values in parse_qs(urlsplit(url).query).items()}
    return {name: value for name, value in query.items() if name in TLS_QUERY}


def render_error(values: Path) -> str:
    """The one error line of a failed rendering (helm adds a hint about --debug below it)."""
    result = run_helm("template", "pg", str(CHART), f"--values={values}")
    assert result.returncode != 0, "the chart rendered"
    assert "hunter2" not in result.stdout + result.stderr  # the test URLs' password
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    return line


@pytest.mark.parametrize("scheme", TLS_SCHEMES)
def test_the_ca_is_mounted_read_only_where_the_url_names_it_in_every_redis_component(
        tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}://{TARGETS[scheme]}?{CA_QUERY}"
    found = deployments(values_file(tmp_path, {"url": url, "caSecret": "redis-ca", "caKey": "root.pem"}, WITH_EDGE))
    for name in REDIS_USERS:
        env, mounts, volumes = pod_parts(found[name])
        assert env["PATCHGATE_REDIS_URL"] == url, name
        assert mounts["redis-tls"] == {"name": "redis-tls", "mountPath": TLS_DIR, "readOnly": True}, name
        assert volumes["redis-tls"]["projected"]["defaultMode"] == 0o440, name
        files = mounted_files(mounts["redis-tls"], volumes["redis-tls"])
        assert files == {f"{TLS_DIR}/ca.crt": ("redis-ca", "root.pem")}, name
        assert set(tls_files_named(url).values()) == set(files), name


def test_a_client_certificate_and_ca_from_one_secret_are_what_the_url_names(tmp_path: Path) -> None:
    """cert-manager's Secret holds ca.crt, tls.crt and tls.key: it may serve as both."""
    url = f"rediss+sentinel://{TARGETS['rediss+sentinel']}?{CA_QUERY}&{CLIENT_QUERY}&sentinel_username=pg"
    values = values_file(tmp_path, {"url": url, "caSecret": "redis-tls", "clientCertSecret": "redis-tls"})
    for name, deployment in deployments(values).items():
        _, mounts, volumes = pod_parts(deployment)
        files = mounted_files(mounts["redis-tls"], volumes["redis-tls"])
        assert files == {f"{TLS_DIR}/ca.crt": ("redis-tls", "ca.crt"), f"{TLS_DIR}/tls.crt": ("redis-tls", "tls.crt"),
                         f"{TLS_DIR}/tls.key": ("redis-tls", "tls.key")}, name
        assert tls_files_named(url) == {"ssl_ca_certs": f"{TLS_DIR}/ca.crt", "ssl_certfile": f"{TLS_DIR}/tls.crt",
                                        "ssl_keyfile": f"{TLS_DIR}/tls.key"}
        assert set(tls_files_named(url)) == set(TLS_QUERY)  # every file the store takes can be mounted


def test_a_client_certificate_alone_leaves_the_servers_to_the_system_cas(tmp_path: Path) -> None:
    url = f"rediss://{TARGETS['rediss']}?{CLIENT_QUERY}"
    worker = deployments(values_file(tmp_path, {"url": url, "clientCertSecret": "patchgate-client"}))
    _, mounts, volumes = pod_parts(worker["pg-patchgate-worker"])
    assert set(mounted_files(mounts["redis-tls"], volumes["redis-tls"])) == {f"{TLS_DIR}/tls.crt", f"{TLS_DIR}/tls.key"}


def test_the_edge_gets_neither_the_redis_url_nor_its_files(tmp_path: Path) -> None:
    """The edge does not use Redis: no URL (it may hold a password), no client key next to Postfix."""
    url = f"rediss://{TARGETS['rediss']}?{CA_QUERY}&{CLIENT_QUERY}"
    values = values_file(tmp_path, {"url": url, "caSecret": "ca", "clientCertSecret": "client"}, WITH_EDGE)
    env, mounts, volumes = pod_parts(deployments(values)["pg-patchgate-edge"])
    assert "PATCHGATE_REDIS_URL" not in env
    assert "redis-tls" not in mounts and "redis-tls" not in volumes


@pytest.mark.parametrize("values", [(), (PRODUCTION_VALUES,)], ids=["default", "production"])
def test_nothing_is_mounted_without_a_ca_or_client_secret(tmp_path: Path, values: tuple[Path, ...]) -> None:
    unset = values_file(tmp_path, {"caSecret": "", "clientCertSecret": ""})
    found = deployments(*values, unset)
    assert set(found) >= REDIS_USERS
    for name, deployment in found.items():
        _, mounts, volumes = pod_parts(deployment)
        assert "redis-tls" not in mounts and "redis-tls" not in volumes, name
        assert not any(m["mountPath"].startswith(TLS_DIR) for m in mounts.values()), name


def test_production_mounts_its_ca_for_a_url_from_a_secret_the_chart_cannot_check() -> None:
    for name in REDIS_USERS:
        env, mounts, volumes = pod_parts(deployments(PRODUCTION_VALUES)[name])
        assert env["PATCHGATE_REDIS_URL"] == {"secretKeyRef": {"name": "patchgate-redis", "key": "url"}}
        assert mounts["redis-tls"]["readOnly"] is True
        assert mounted_files(mounts["redis-tls"], volumes["redis-tls"]) == {
            f"{TLS_DIR}/ca.crt": ("patchgate-redis-ca", "ca.crt")}


def test_the_notes_tell_what_the_url_in_the_secret_must_carry(tmp_path: Path) -> None:
    values = values_file(tmp_path, {"existingSecret": "patchgate-redis", "caSecret": "ca", "clientCertSecret": "c"})
    result = run_helm("install", "pg", str(CHART), "--dry-run=client", f"--values={values}")
    assert result.returncode == 0, result.stderr
    assert f"carry ?{CA_QUERY}&{CLIENT_QUERY} (the files the chart mounts; it cannot check that URL)" in result.stdout
    plain = run_helm("install", "pg", str(CHART), "--dry-run=client", f"--values={PRODUCTION_VALUES}",
                     f"--values={values_file(tmp_path, {'caSecret': ''})}")
    assert plain.returncode == 0 and "Redis over TLS" not in plain.stdout


@pytest.mark.parametrize("values", [(), (PRODUCTION_VALUES,)], ids=["default", "production"])
def test_the_tls_chart_lints_and_is_valid_for_kubernetes(tmp_path: Path, values: tuple[Path, ...]) -> None:
    url = f"rediss+cluster://{TARGETS['rediss+cluster']}?{CA_QUERY}&{CLIENT_QUERY}"
    tls = values_file(tmp_path, {"url": url, "caSecret": "ca", "clientCertSecret": "client"}, WITH_EDGE)
    result = run_helm("lint", "--strict", str(CHART), *[f"--values={v}" for v in (*values, tls)])
    assert result.returncode == 0, result.stdout + result.stderr
    for obj in render(*values, tls):
        if obj["kind"] != "ScaledObject":  # checked against KEDA's schema in test_helm_chart.py
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)


@pytest.mark.parametrize("scheme", PLAIN_SCHEMES)
def test_a_plain_text_url_with_a_ca_stops_the_rendering(tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}://patchgate:hunter2@r:6379/0?{CA_QUERY}"
    error = render_error(values_file(tmp_path, {"url": url, "caSecret": "ca"}))
    assert ("redis.caSecret is set, so redis.url must use TLS (rediss://, rediss+cluster:// or rediss+sentinel://), "
            f"got {scheme}://") in error


@pytest.mark.parametrize(("redis", "message"), [
    ({"url": "rediss://patchgate:hunter2@r:6380/0", "caSecret": "ca"},
     f"redis.caSecret is set, so redis.url must carry {CA_QUERY} (where the chart mounts it), got no ssl_ca_certs"),
    ({"url": "rediss://patchgate:hunter2@r:6380/0?ssl_ca_certs=/etc/ssl/redis.pem", "caSecret": "ca"},
     f"redis.caSecret is set, so redis.url must carry {CA_QUERY} (where the chart mounts it), "
     "got ssl_ca_certs=/etc/ssl/redis.pem"),
    ({"url": f"rediss://patchgate:hunter2@r:6380/0?{CA_QUERY}&ssl_ca_certs=/etc/ssl/redis.pem", "caSecret": "ca"},
     "got ssl_ca_certs=/etc/ssl/redis.pem"),  # the last value counts, as for the store
    ({"url": f"rediss://patchgate:hunter2@r:6380/0?{CA_QUERY}&ssl_certfile={TLS_DIR}/tls.crt",
      "caSecret": "ca", "clientCertSecret": "client"},
     f"redis.clientCertSecret is set, so redis.url must carry ssl_keyfile={TLS_DIR}/tls.key (where the chart "
     "mounts it), got no ssl_keyfile"),
    ({"url": f"rediss://patchgate:hunter2@r:6380/0?{CA_QUERY}"},
     f"redis.url names {CA_QUERY}, but redis.caSecret is empty: the chart mounts nothing there"),
    ({"url": f"rediss://patchgate:hunter2@r:6380/0?{CA_QUERY}&{CLIENT_QUERY}", "caSecret": "ca"},
     f"redis.url names ssl_certfile={TLS_DIR}/tls.crt, but redis.clientCertSecret is empty: the chart mounts "
     "nothing there"),
    ({"url": "patchgate:hunter2@r:6380", "caSecret": "ca"}, "must use TLS (rediss://, rediss+cluster:// or "
     "rediss+sentinel://), got no scheme"),
    ({"url": f"rediss://patchgate:hunter2@r:6380/0?{CA_QUERY}", "caSecret": "ca", "caKey": ""},
     "redis.caKey: the key of redis.caSecret holding the CA"),
], ids=["no-ca", "other-ca", "last-ca-counts", "no-key", "ca-not-mounted", "cert-not-mounted", "no-scheme",
        "no-ca-key"])
def test_an_inline_url_that_misses_the_mounted_files_stops_the_rendering(
        tmp_path: Path, redis: dict[str, str], message: str) -> None:
    error = render_error(values_file(tmp_path, redis))
    assert message in error


def test_a_percent_encoded_path_is_the_path(tmp_path: Path) -> None:
    """urlencode() writes / as %2F; the store decodes it, so the chart does too."""
    url = f"rediss://r:6380/0?ssl_ca_certs={TLS_DIR.replace('/', '%2F')}%2fca.crt"
    assert tls_files_named(url) == {"ssl_ca_certs": f"{TLS_DIR}/ca.crt"}
    found = deployments(values_file(tmp_path, {"url": url, "caSecret": "ca"}))
    assert {name for name, d in found.items() if "redis-tls" in pod_parts(d)[1]} == REDIS_USERS


def test_a_url_from_a_secret_is_not_checked(tmp_path: Path) -> None:
    """The chart cannot see it: the mount is made and the NOTES say what the URL must carry."""
    values = values_file(tmp_path, {"url": "redis://ignored:6379/0", "existingSecret": "patchgate-redis",
                                    "caSecret": "ca"})
    found = deployments(values)
    assert {name for name, d in found.items() if "redis-tls" in pod_parts(d)[1]} == REDIS_USERS
