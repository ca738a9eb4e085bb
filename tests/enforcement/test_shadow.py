"""Shadow mode in the policy file (``[shadow]``) and in what enforcement computes from it."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest

from processors.contracts import contracts
from processors.enforcement.pauses import PauseState
from processors.enforcement.policy import (
    EnforcementPolicy,
    PolicyError,
    ShadowPolicy,
    enforcement_policy_from_mapping,
    load_enforcement_policy,
)
from processors.enforcement.verdicts import SHADOW_NOTE, Evaluation, ServerState, evaluate

POLICY = load_enforcement_policy()
DETECTED = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
STATE = ServerState(
    server_key="contoso/ex01.contoso.com", tenant_id="contoso", server="ex01.contoso.com",
    status="unsupported", rule="end_of_support", product="Exchange Server 2016", build="15.1.2507.6",
    recommended=({"short": "15.2.2562.53", "long": "15.02.2562.053", "name": "Exchange Server SE RTM Oct26SU"},),
    detected_at=DETECTED, connector_type="OnPremises", client_ips=("203.0.113.10",),
)
STAGE_8 = datetime(2026, 5, 30, 12, tzinfo=UTC)  # detection + 90 days


def _document(shadow: Any = None) -> dict[str, Any]:
    document = tomllib.loads(resources.files("processors").joinpath("data/policy.toml").read_text())
    if shadow is not None:
        document["shadow"] = shadow
    return document


def shadowed(*tenants: str, default: bool = False) -> EnforcementPolicy:
    return replace(POLICY, shadow=ShadowPolicy(default=default, shadowed=frozenset(tenants)))


def verdict(evaluation: Evaluation) -> dict[str, Any]:
    assert evaluation.verdict_prefix is not None and evaluation.verdict_suffix is not None
    document: dict[str, Any] = orjson.loads(evaluation.verdict_prefix + b"1" + evaluation.verdict_suffix)
    contracts.verdict(document)
    return document


# ------------------------------------------------------------------------------------------ the policy

def test_the_packaged_policy_shadows_nobody() -> None:
    assert POLICY.shadow == ShadowPolicy()
    assert not POLICY.shadow.applies_to("contoso")


def test_per_tenant_overrides_win_over_the_default_either_way() -> None:
    policy = enforcement_policy_from_mapping(_document({"default": True, "tenants": {"fabrikam": False}}))
    assert (policy.shadow.applies_to("contoso"), policy.shadow.applies_to("fabrikam")) == (True, False)
    policy = enforcement_policy_from_mapping(_document({"tenants": {"contoso": True, "fabrikam.eu": False}}))
    assert (policy.shadow.applies_to("contoso"), policy.shadow.applies_to("fabrikam.eu"),
            policy.shadow.applies_to("tailspin")) == (True, False, False)


def test_the_table_is_read_from_the_file(tmp_path: Path) -> None:
    text = resources.files("processors").joinpath("data/policy.toml").read_text()
    path = tmp_path / "policy.toml"
    path.write_text(text.replace("# contoso = true", "contoso = true"))
    assert load_enforcement_policy(path).shadow == ShadowPolicy(shadowed=frozenset({"contoso"}))


@pytest.mark.parametrize(("shadow", "message"), [
    ({"enabled": True}, "shadow: unknown key 'enabled' (allowed: default, tenants)"),
    ({"default": "yes"}, "shadow.default: must be true or false, got 'yes'"),
    ({"default": 1}, "shadow.default: must be true or false, got 1"),
    ({"tenants": ["contoso"]}, "shadow.tenants: must be a table of tenant id = true | false"),
    ({"tenants": {"contoso": "on"}}, "shadow.tenants.contoso: must be true or false, got 'on'"),
    ({"tenants": {"-contoso": True}}, "shadow.tenants: '-contoso' is not a tenant id"),
    ({"tenants": {"contoso/ex01": True}}, "shadow.tenants: 'contoso/ex01' is not a tenant id"),
    ({"tenants": {"x" * 65: True}}, "is not a tenant id"),
    (True, "shadow: must be a table ([shadow] with default = true | false and [shadow.tenants]), got True"),
])
def test_a_bad_shadow_table_is_one_error_naming_the_key(shadow: Any, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        enforcement_policy_from_mapping(_document(shadow))
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_unknown_top_level_table_is_refused() -> None:
    document = _document()
    document["shadw"] = {"default": True}
    with pytest.raises(PolicyError, match=r"^policy file: unknown key 'shadw' \(allowed: classification, "
                                          r"enforcement, pauses, products, shadow\)$"):
        enforcement_policy_from_mapping(document)


def test_a_bad_file_is_named_in_the_error(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    document_text = resources.files("processors").joinpath("data/policy.toml").read_text()
    path.write_text(document_text.replace("# contoso = true", "contoso = 1"))
    with pytest.raises(PolicyError, match=rf"^{path}: shadow.tenants.contoso: must be true or false, got 1$"):
        load_enforcement_policy(path)


# ---------------------------------------------------------------------------------------- evaluation

def test_a_shadowed_tenants_verdict_says_so_and_keeps_everything_else() -> None:
    committed = replace(STATE, stage=7, issued_at=DETECTED)
    enforced = evaluate(committed, POLICY, PauseState(), STAGE_8)
    shadow = evaluate(committed, shadowed("contoso"), PauseState(), STAGE_8)
    body, shadow_body = verdict(enforced), verdict(shadow)
    assert "shadow" not in body  # tenants not shadowed: the verdict as before, byte for byte
    assert shadow_body == {**body, "shadow": True}
    assert (shadow.stage, shadow.action, shadow_body["block_minutes"]) == (8, "block", 60)
    assert shadow.fingerprint == f"{enforced.fingerprint}|shadow"
    assert shadow.history == {**enforced.history, "shadow": True}


def test_a_shadowed_tenants_notifications_say_so_in_the_field_and_the_text() -> None:
    committed = replace(STATE, stage=7, issued_at=DETECTED)
    (plain,) = evaluate(committed, POLICY, PauseState(), STAGE_8).notifications
    (notice,) = evaluate(committed, shadowed("contoso"), PauseState(), STAGE_8).notifications
    contracts.notification(notice)
    assert "shadow" not in plain
    assert notice == {**plain, "shadow": True, "text": plain["text"] + SHADOW_NOTE}
    week_before = evaluate(replace(STATE, stage=1, issued_at=DETECTED), shadowed("contoso"), PauseState(),
                           datetime(2026, 3, 25, tzinfo=UTC))
    assert [(n["kind"], n.get("shadow")) for n in week_before.once_notifications] == [("stage_upcoming", True)]


def test_other_tenants_are_not_shadowed() -> None:
    fabrikam = replace(STATE, server_key="fabrikam/ex01.fabrikam.com", tenant_id="fabrikam",
                       server="ex01.fabrikam.com")
    assert "shadow" not in verdict(evaluate(fabrikam, shadowed("contoso"), PauseState(), STAGE_8))
    everyone = replace(POLICY, shadow=ShadowPolicy(default=True, enforced=frozenset({"fabrikam"})))
    assert "shadow" not in verdict(evaluate(fabrikam, everyone, PauseState(), STAGE_8))
    assert verdict(evaluate(STATE, everyone, PauseState(), STAGE_8))["shadow"] is True


def test_switching_shadow_changes_the_fingerprint_of_an_enforced_server_only() -> None:
    committed = replace(STATE, stage=8, issued_at=STAGE_8)
    later = datetime(2026, 6, 2, tzinfo=UTC)
    assert evaluate(committed, POLICY, PauseState(), later).fingerprint != \
        evaluate(committed, shadowed("contoso"), PauseState(), later).fingerprint
    patched = replace(STATE, status="current", stage=0, issued_at=STAGE_8)  # remediated before
    assert evaluate(patched, shadowed("contoso"), PauseState(), later).fingerprint is None

