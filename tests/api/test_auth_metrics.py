"""Token configuration (file, env) and the metrics exposition server."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from processors import metrics
from processors.api.auth import TokenConfigError, TokenStore

A = "contoso-token-0123456789abcdef"
OP = "operator-token-0123456789abcdef"


def test_tokens_from_toml_json_and_env(tmp_path: Path) -> None:
    toml = tmp_path / "tokens.toml"
    toml.write_text(f'[tokens]\n"{A}" = "contoso"\n"{OP}" = "*"\n')
    store = TokenStore.from_env({"PATCHGATE_API_TOKENS_FILE": str(toml)})
    principal = store.authenticate(f"Bearer {A}")
    assert principal is not None and principal.tenant == "contoso" and not principal.operator
    assert principal.may_access("contoso") and not principal.may_access("fabrikam")
    operator = store.authenticate(f"bearer  {OP} ")
    assert operator is not None and operator.operator and operator.may_access("anything")
    assert store.authenticate(f"Bearer {A}x") is None
    assert store.authenticate(A) is None  # no scheme
    assert store.authenticate(None) is None

    js = tmp_path / "tokens.json"
    js.write_text(json.dumps({A: "contoso"}))
    assert TokenStore.from_env({"PATCHGATE_API_TOKENS_FILE": str(js)}).authenticate(f"Bearer {A}") is not None

    env = TokenStore.from_env({"PATCHGATE_API_TOKENS": f"{A}=contoso, {OP}=*"})
    assert len(env) == 2
    assert env.authenticate(f"Bearer {OP}").operator  # type: ignore[union-attr]
    # the principal's actor names the token by a hash prefix, never by the token itself
    assert A not in principal.actor and principal.actor.startswith("api:tenant:contoso:")


@pytest.mark.parametrize("content, message", [
    ('[tokens]\n"short" = "contoso"\n', "at least 16 characters"),
    (f'[tokens]\n"{A}" = "bad tenant!"\n', "tenant id or '*'"),
    ("[tokens\n", "not valid TOML or JSON"),
    (f'tokens = ["{A}"]\n', "'tokens' must be a table"),
])
def test_bad_token_files_are_refused_with_a_clear_message(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(content)
    with pytest.raises(TokenConfigError, match=message.replace("(", r"\(").replace("*", r"\*")):
        TokenStore.from_env({"PATCHGATE_API_TOKENS_FILE": str(path)})


def test_bad_env_tokens_are_refused() -> None:
    with pytest.raises(TokenConfigError, match="token=tenant"):
        TokenStore.from_env({"PATCHGATE_API_TOKENS": "justatokenwithoutatenant"})


def test_metrics_server_exposes_the_shared_metrics() -> None:
    metrics.EVENTS_IN.labels("patchgate.metadata").inc(3)
    metrics.DEAD_LETTERS.labels(metrics.reason_label("invalid JSON: expected value at line 1")).inc()
    metrics.REDIS_SECONDS.labels("observe").observe(0.002)
    metrics.CONSUMER_LAG.labels("patchgate.metadata", "0").set(42)
    server = metrics.start_metrics_server(0)
    try:
        port = server.server_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'patchgate_events_in_total{topic="patchgate.metadata"}' in text
    assert 'patchgate_deadletter_total{reason="invalid_json"} 1.0' in text
    assert 'patchgate_redis_seconds_bucket{le="0.0025",operation="observe"}' in text
    assert 'patchgate_consumer_lag{partition="0",topic="patchgate.metadata"} 42.0' in text
    assert metrics.reason_label("") == "other"
    assert len(metrics.reason_label("x" * 500)) == 40
