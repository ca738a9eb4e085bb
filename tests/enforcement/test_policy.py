"""The stage table: defaults from the packaged policy, positions in time, validation errors."""

from __future__ import annotations

import copy
import tomllib
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

import pytest

from processors.enforcement.policy import PolicyError, enforcement_policy_from_mapping, load_enforcement_policy


def _document() -> dict[str, Any]:
    return tomllib.loads(resources.files("processors").joinpath("data/policy.toml").read_text())


def test_default_table_matches_the_documented_timeline() -> None:
    policy = load_enforcement_policy()
    table = [(s.number, s.start_day, s.throttle_minutes, s.block_minutes) for s in policy.stages]
    assert table == [(1, 0, 0, 0), (2, 30, 5, 0), (3, 40, 10, 0), (4, 50, 20, 0), (5, 60, 30, 5),
                     (6, 70, 30, 10), (7, 80, 30, 20), (8, 90, 0, 60)]
    assert policy.upcoming_lead_days == 7
    assert policy.pauses.days_per_year == 90
    assert policy.enforced_connector_types == frozenset({"OnPremises"})


@pytest.mark.parametrize(("day", "stage", "next_day"), [
    (0, 1, 30), (29, 1, 30), (30, 2, 40), (39, 2, 40), (40, 3, 50), (59, 4, 60), (60, 5, 70), (89, 7, 90),
    (90, 8, None), (400, 8, None),
])
def test_position_by_days_since_detection(day: int, stage: int, next_day: int | None) -> None:
    policy = load_enforcement_policy()
    detected = date(2026, 3, 1)
    at = datetime(2026, 3, 1, 23, 59, tzinfo=UTC) + (date.fromordinal(detected.toordinal() + day) - detected)
    position = policy.position(detected, at)
    assert position.stage.number == stage
    if next_day is None:
        assert position.next_at is None and position.next_stage is None
    else:
        assert position.next_at == datetime.combine(date.fromordinal(detected.toordinal() + next_day),
                                                    datetime.min.time(), tzinfo=UTC)


def test_upcoming_notices_precede_first_throttle_and_first_block() -> None:
    policy = load_enforcement_policy()
    notices = policy.upcoming_notices(date(2026, 3, 1))
    assert [(t.date().isoformat(), s.number) for t, s in notices] == [("2026-03-24", 2), ("2026-04-23", 5)]


def test_replies_are_exact_and_configurable() -> None:
    document = _document()
    assert load_enforcement_policy().throttle_reply(5) == (
        "450 4.7.230 Connecting Exchange server version is out-of-date; connection to patchgate throttled "
        "for 5 mins/hr.")
    document["enforcement"]["replies"] = {"service_name": "Contoso Mail", "help_url": "https://help.example/x"}
    policy = enforcement_policy_from_mapping(document)
    assert policy.block_reply(60) == (
        "550 5.7.230 Connecting Exchange server version is out-of-date; connection to Contoso Mail blocked "
        "for 60 mins/hr. For more information see https://help.example/x.")


def _mutated(path: list[Any], value: Any) -> dict[str, Any]:
    document = copy.deepcopy(_document())
    node: Any = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return document


@pytest.mark.parametrize(("path", "value", "message"), [
    (["enforcement", "stages", 2, "start_day"], 30, r"enforcement\.stages\[2\]\.start_day: must be greater"),
    (["enforcement", "stages", 0, "start_day"], 1, r"enforcement\.stages\[0\]\.start_day: the first stage"),
    (["enforcement", "stages", 4, "throttle_minutes"], 58, r"enforcement\.stages\[4\]: throttle_minutes \+ block"),
    (["enforcement", "stages", 1, "stage"], 7, r"enforcement\.stages\[1\]\.stage: stages must be numbered"),
    (["enforcement", "stages", 1, "block_minutes"], -1,
     r"enforcement\.stages\[1\]\.block_minutes: must be an integer 0\.\.60"),
    (["enforcement", "stages"], [], r"enforcement\.stages: must be a non-empty array"),
    (["enforcement", "upcoming_lead_days"], "7", r"enforcement\.upcoming_lead_days: must be an integer"),
    (["enforcement", "replies", "help_url"], "x%y", r"enforcement\.replies\.help_url: must be one line"),
    (["enforcement", "typo"], 1, r"enforcement: unknown key 'typo'"),
    (["pauses", "days_per_year"], 400, r"pauses\.days_per_year: must be an integer 0\.\.366"),
])
def test_invalid_policy_names_the_key(path: list[Any], value: Any, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        enforcement_policy_from_mapping(_mutated(path, value))
