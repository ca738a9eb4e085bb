"""Policy loading/validation, and the decision rules that depend on policy settings."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from processors.classify import (
    ClassificationPolicy,
    Connection,
    PolicyError,
    classify,
    load_catalog,
    load_policy,
)
from processors.classify.catalog import build_catalog
from processors.classify.decide import Evaluator
from processors.classify.policy import parse_policy_text, policy_from_mapping

DATA = Path(__file__).resolve().parents[2] / "processors" / "data"


def _hop(build: str, by: str = "mail.contoso.com") -> list[tuple[str, str]]:
    return [
        (
            "Received",
            f"from EX01.contoso.local (10.0.0.5) by {by} (10.0.0.6) with Microsoft SMTP Server "
            f"(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id {build}; "
            "Tue, 2 Jul 2024 10:11:12 +0000",
        )
    ]


def _at(day: str) -> datetime:
    return datetime.fromisoformat(day + "T12:00:00+00:00")


CONN = Connection("203.0.113.5", "mail.contoso.com")


def test_packaged_policy_loads_and_scalars_match_code_defaults() -> None:
    pol = load_policy()
    d = ClassificationPolicy()
    for name in ("grace_days", "security_kinds", "esu", "upgrade_targets", "cloud_host_suffixes"):
        assert getattr(pol, name) == getattr(d, name), name
    assert len(pol.baselines) == 5
    b = pol.baseline_for("Exchange Server 2016", "CU23", date(2026, 11, 28))
    assert b is not None and b.min_short == "15.1.2507.61"
    b = pol.baseline_for("Exchange Server 2016", "CU23", date(2025, 1, 1))
    assert b is not None and b.min_short == "15.1.2507.31"
    assert pol.baseline_for("Exchange Server 2016", "CU23", date(2024, 4, 30)) is None


def test_other_top_level_tables_are_ignored(tmp_path: Path) -> None:
    text = (DATA / "policy.toml").read_text() + (
        "\n[[stages]]\nstage = 1\ndays = [0, 30]\n\n[replies]\nservice = 'x'\nunknown = {a = 1}\n"
    )
    p = tmp_path / "policy.toml"
    p.write_text(text)
    assert load_policy(p).grace_days == 30
    assert "stages" in tomllib.loads(text)


def test_missing_table_gives_defaults() -> None:
    assert parse_policy_text("[stages]\nx = 1\n").grace_days == 30


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"grace_days": -3}, "classification.grace_days: must be an integer 0..365, got -3"),
        ({"grace_days": 366}, "classification.grace_days: must be an integer 0..365, got 366"),
        ({"grace_days": "30"}, "classification.grace_days: must be an integer 0..365, got '30'"),
        ({"grace_days": True}, "classification.grace_days: must be an integer 0..365, got True"),
        ({"esu": "yes"}, "classification.esu: must be true or false, got 'yes'"),
        ({"security_kinds": ["SU", "XU"]}, "classification.security_kinds: unknown kind(s) 'XU'"),
        ({"security_kinds": []}, "classification.security_kinds: must not be empty"),
        ({"security_kinds": "SU"}, "classification.security_kinds: must be a list of strings, got 'SU'"),
        ({"upgrade_targets": ["Exchange Server 2027"]}, "classification.upgrade_targets: unknown product(s)"),
        ({"cloud_host_suffixes": ["outlook.com"]}, "classification.cloud_host_suffixes: each must start with '.'"),
        ({"serviced_cus": ["CU14"]}, "classification.serviced_cus: must be a table"),
        ({"serviced_cus": {"Exchange 2019": ["CU14"]}}, "classification.serviced_cus: unknown product"),
        ({"grace_dayz": 3}, "classification.grace_dayz: unknown key"),
        ({"baselines": {"a": 1}}, "classification.baselines: must be an array of tables"),
        (
            {
                "baselines": [
                    {"product": "Exchange Server 2016", "cu": "CU23", "min_build": "15.1.x", "from": "2024-01-01"}
                ]
            },
            "classification.baselines[0].min_build: must be a build like",
        ),
        (
            {"baselines": [{"product": "Exchange Server 2016", "cu": "CU23", "min_build": "15.1.2507.6"}]},
            "classification.baselines[0].from: missing",
        ),
        (
            {
                "baselines": [
                    {"product": "Exchange Server 2016", "cu": "CU23", "min_build": "15.1.2507.6", "from": "soon"}
                ]
            },
            "classification.baselines[0].from: must be a date (YYYY-MM-DD), got 'soon'",
        ),
        (
            {
                "baselines": [
                    {"product": "Exchange 2016", "cu": "CU23", "min_build": "15.1.2507.6", "from": "2024-01-01"}
                ]
            },
            "classification.baselines[0].product: unknown product 'Exchange 2016'",
        ),
        (
            {
                "baselines": [
                    {"product": "Exchange Server 2016", "cu": "", "min_build": "15.1.2507.6", "from": "2024-01-01"}
                ]
            },
            "classification.baselines[0].cu: must be a non-empty string",
        ),
        (
            {
                "baselines": [
                    {
                        "product": "Exchange Server 2016",
                        "cu": "CU23",
                        "min_build": "15.1.2507.6",
                        "from": "2024-01-01",
                        "floor": 1,
                    }
                ]
            },
            "classification.baselines[0].floor: unknown key",
        ),
    ],
)
def test_validation_errors_name_the_key(table: dict[str, object], error: str) -> None:
    with pytest.raises(PolicyError) as exc:
        policy_from_mapping(table)
    assert any(e.startswith(error) for e in exc.value.errors), exc.value.errors


def test_all_errors_reported_at_once() -> None:
    with pytest.raises(PolicyError) as exc:
        policy_from_mapping({"grace_days": -1, "esu": 1})
    assert len(exc.value.errors) == 2


def test_invalid_toml() -> None:
    with pytest.raises(PolicyError, match="invalid TOML"):
        parse_policy_text("[classification\n")


def test_toml_date_literal_and_long_build() -> None:
    pol = parse_policy_text(
        "[classification]\n[[classification.baselines]]\nproduct = 'Exchange Server 2019'\ncu = 'CU14'\n"
        "min_build = '15.02.1544.036'\nfrom = 2026-09-01\n"
    )
    assert pol.baselines[0].min_build == (15, 2, 1544, 36)
    assert pol.baselines[0].since == date(2026, 9, 1)


# ------------------------------------------------------------------------------------ rules by policy


def test_grace_days_changes_the_verdict() -> None:
    strict = policy_from_mapping({"grace_days": 0})
    lax = policy_from_mapping({"grace_days": 60})
    r = classify(_hop("15.2.2562.49"), CONN, _at("2026-10-20"), policy=strict)
    assert (r.status, r.rule) == ("behind", "grace_period")
    r = classify(_hop("15.2.2562.46"), CONN, _at("2026-10-20"), policy=lax)
    assert (r.status, r.rule) == ("current", "within_grace")


def test_grace_boundary_is_more_than_grace_days() -> None:
    pol = policy_from_mapping({"grace_days": 30})
    # Sep26SUv2 released 2026-10-02: public for exactly 30 days on 2026-11-01 -> still within grace
    assert classify(_hop("15.2.2562.49"), CONN, _at("2026-11-01"), policy=pol).status == "current"
    assert classify(_hop("15.2.2562.49"), CONN, _at("2026-11-02"), policy=pol).status == "behind"


def test_observation_time_is_taken_in_utc() -> None:
    pol = policy_from_mapping({"grace_days": 30})
    late = datetime.fromisoformat("2026-11-01T23:30:00-05:00")  # 2026-11-02 04:30 UTC
    assert classify(_hop("15.2.2562.49"), CONN, late, policy=pol).status == "behind"


def test_esu_true_keeps_esu_cus_supported() -> None:
    esu = policy_from_mapping({"esu": True})
    r = classify(_hop("15.2.1748.49"), CONN, _at("2026-09-01"), policy=esu)
    assert (r.status, r.rule) == ("current", "latest_su"), r.reason
    r = classify(_hop("15.1.2507.66"), CONN, _at("2026-09-01"), policy=esu)
    assert (r.status, r.rule) == ("behind", "grace_period"), r.reason
    assert [b.short for b in r.recommended_builds] == ["15.1.2507.71", "15.1.2507.72"]
    # a CU that was not serviced at end of support gets no ESU
    r = classify(_hop("15.2.1258.39"), CONN, _at("2026-09-01"), policy=esu)
    assert (r.status, r.rule) == ("unsupported", "end_of_support"), r.reason
    assert "Extended Security Updates" in r.reason
    # ESU ends with the esu_end month (2026-10 -> 2026-10-31)
    assert classify(_hop("15.2.1748.53"), CONN, _at("2026-10-31"), policy=esu).status == "current"
    r = classify(_hop("15.2.1748.53"), CONN, _at("2026-11-01"), policy=esu)
    assert (r.status, r.rule) == ("unsupported", "end_of_support")
    assert "ESU ended 2026-10-31" in r.reason


def test_esu_false_is_unsupported_after_eos() -> None:
    r = classify(_hop("15.2.1748.49"), CONN, _at("2026-09-01"))
    assert (r.status, r.rule) == ("unsupported", "end_of_support")
    assert r.recommended_builds and all(b.name.startswith("Exchange Server SE") for b in r.recommended_builds)


def test_explicit_serviced_cus_override() -> None:
    pol = policy_from_mapping({"serviced_cus": {"Exchange Server 2019": ["CU14"]}})
    r = classify(_hop("15.2.1258.32"), CONN, _at("2024-06-01"), policy=pol)
    assert (r.status, r.rule) == ("unsupported", "cu_unserviced")
    assert {b.short.rsplit(".", 1)[0] for b in r.recommended_builds} == {"15.2.1544"}


def test_baseline_applies_from_its_date() -> None:
    pol = policy_from_mapping(
        {
            "baselines": [
                {"product": "Exchange Server SE", "cu": "RTM", "min_build": "15.2.2562.53", "from": "2026-10-05"}
            ]
        }
    )
    assert classify(_hop("15.2.2562.49"), CONN, _at("2026-10-04"), policy=pol).rule == "within_grace"
    r = classify(_hop("15.2.2562.49"), CONN, _at("2026-10-05"), policy=pol)
    assert (r.status, r.rule) == ("behind", "baseline")
    assert "15.2.2562.53" in r.reason


def test_recommended_builds_current_se() -> None:
    r = classify(_hop("15.2.2562.49"), CONN, _at("2026-10-20"))
    assert [(b.short, b.long) for b in r.recommended_builds] == [
        ("15.2.2562.49", "15.02.2562.049"),
        ("15.2.2562.53", "15.02.2562.053"),
    ]
    assert r.recommended_builds[1].name == "Exchange Server SE RTM Sep26SUv2"


def test_upgrade_target_falls_back_when_se_did_not_exist() -> None:
    r = classify(_hop("14.3.513.0"), CONN, _at("2022-01-15"))
    assert (r.status, r.rule) == ("unsupported", "end_of_support")
    assert r.recommended_builds and r.recommended_builds[0].name.startswith("Exchange Server 2019 ")


# ---------------------------------------------------------------- Modern lifecycle: current CU only

SE_CU1_ROWS = (
    "Exchange Server SE,Exchange Server SE CU1,15.2.2700.5,15.02.2700.005,2026-12-08,CU,CU1,synthetic\n"
    "Exchange Server SE,Exchange Server SE CU1 Jan27SU,15.2.2700.9,15.02.2700.009,2027-01-12,SU,CU1,synthetic\n"
)


@pytest.fixture(scope="module")
def catalog_with_se_cu1() -> object:
    builds = (DATA / "exchange-builds.csv").read_bytes() + SE_CU1_ROWS.encode()
    return build_catalog(builds, (DATA / "exchange-lifecycle.csv").read_bytes())


def test_se_old_cu_unsupported_after_grace(catalog_with_se_cu1: object) -> None:
    cat = catalog_with_se_cu1
    r = classify(_hop("15.2.2562.53"), CONN, _at("2026-12-20"), catalog=cat)  # type: ignore[arg-type]
    assert r.status == "current", r.reason  # CU1 is 12 days old: RTM still acceptable
    r = classify(_hop("15.2.2562.53"), CONN, _at("2027-01-10"), catalog=cat)  # type: ignore[arg-type]
    assert (r.status, r.rule) == ("unsupported", "current_cu"), r.reason
    assert [b.short for b in r.recommended_builds] == ["15.2.2700.5"]
    r = classify(_hop("15.2.2700.5"), CONN, _at("2027-01-20"), catalog=cat)  # type: ignore[arg-type]
    assert (r.status, r.rule) == ("current", "within_grace")


def test_evaluator_memoises_per_build_and_day() -> None:
    ev = Evaluator(load_catalog(), load_policy())
    a = ev.evaluate((15, 2, 2562, 53), date(2026, 11, 28))
    b = ev.evaluate((15, 2, 2562, 53), date(2026, 11, 28))
    assert a is b
    assert ev.evaluate.cache_info().hits >= 1


def test_classify_accepts_utc_aware_and_naive() -> None:
    a = classify(_hop("15.2.2562.53"), CONN, datetime(2026, 11, 28, 12, tzinfo=UTC))
    b = classify(_hop("15.2.2562.53"), CONN, datetime(2026, 11, 28, 12))
    assert a == b
