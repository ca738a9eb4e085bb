"""The policy file source the API watches (:mod:`processors.policyfile`): a changed file that validates is
swapped in, a bad one is logged once, counted and ignored, the check interval is kept, and a command's
start gets one line for a file it cannot use."""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

import pytest

from processors.classify import PolicyError
from processors.metrics import REGISTRY
from processors.policyfile import PolicyFileSource

PACKAGED = resources.files("processors").joinpath("data", "policy.toml").read_text("utf-8")
SHADOW_ALL = PACKAGED.replace("default = false               # true: every tenant",
                              "default = true                # true: every tenant")


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("patchgate_policy_reloads_total", {"outcome": outcome}) or 0.0


def replace_file(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".new")
    partial.write_text(text)
    partial.replace(path)  # a new inode: a change even when size and mtime look the same


@pytest.fixture
def policy_path(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(PACKAGED)
    return path


def test_a_changed_file_that_validates_is_swapped_in(policy_path: Path) -> None:
    assert SHADOW_ALL != PACKAGED
    source = PolicyFileSource(policy_path, check_interval=0)
    assert not source.current.enforcement.shadow.applies_to("contoso")
    assert source.reload_if_changed() is False  # nothing changed yet
    applied = reloads("applied")
    replace_file(policy_path, SHADOW_ALL)
    assert source.reload_if_changed() is True
    assert source.current.enforcement.shadow.applies_to("contoso")
    assert reloads("applied") == applied + 1


def test_a_broken_file_keeps_the_version_in_force_and_is_reported_once(
        policy_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    source = PolicyFileSource(policy_path, check_interval=0)
    good, rejected = source.current, reloads("rejected")
    replace_file(policy_path, SHADOW_ALL + "\n[shadw]\n")
    with caplog.at_level(logging.ERROR, logger="processors.policyfile"):
        assert source.maybe_reload() is False
        assert source.maybe_reload() is False  # the same bad file: not reported again
    assert source.current is good
    assert reloads("rejected") == rejected + 1
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"new policy rejected, keeping version {good.digest[:16]}: {policy_path}: ")
    assert "shadw" in line and "\n" not in line


def test_a_vanished_file_keeps_the_version_in_force(policy_path: Path) -> None:
    source = PolicyFileSource(policy_path, check_interval=0)
    good, unreadable = source.current, reloads("unreadable")
    policy_path.unlink()
    assert source.reload_if_changed() is False
    assert source.current is good and reloads("unreadable") == unreadable + 1
    policy_path.write_text(SHADOW_ALL)
    assert source.reload_if_changed() is True  # back: taken as soon as it is there and valid


def test_the_check_interval_bounds_how_often_the_file_is_looked_at(policy_path: Path) -> None:
    source = PolicyFileSource(policy_path, check_interval=3600)
    replace_file(policy_path, SHADOW_ALL)
    assert source.maybe_reload() is False and not source.current.enforcement.shadow.applies_to("contoso")
    assert source.reload_if_changed() is True  # what the API's watcher calls once per interval


def test_a_command_start_gets_one_line_for_a_file_it_cannot_use(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(PolicyError) as error:
        PolicyFileSource.at_start(missing, 2.0)
    assert str(error.value) == f"{missing}: cannot read: No such file or directory"
    broken = tmp_path / "broken.toml"
    broken.write_text("[enforcement\n")
    with pytest.raises(PolicyError) as error:
        PolicyFileSource.at_start(broken, 2.0)
    assert str(error.value).startswith(f"{broken}: invalid TOML") and "\n" not in str(error.value)


def stale() -> float | None:
    return REGISTRY.get_sample_value("patchgate_policy_stale", {"kind": "policy"})


def test_the_stale_gauge_says_while_the_file_on_disk_is_not_the_version_in_force(policy_path: Path) -> None:
    """What PatchgatePolicyFileRejected alerts on: 1 from a rejected change (or files that cannot
    be read) until a change loads; the counter alone says it once and then looks healthy."""
    source = PolicyFileSource(policy_path, check_interval=0)
    assert stale() == 0
    replace_file(policy_path, SHADOW_ALL + "\n[shadw]\n")
    assert source.reload_if_changed() is False and stale() == 1
    assert source.reload_if_changed() is False and stale() == 1  # the same bad file: still not in force
    policy_path.unlink()
    assert source.reload_if_changed() is False and stale() == 1
    replace_file(policy_path, SHADOW_ALL)
    assert source.reload_if_changed() is True and stale() == 0
    policy_path.unlink()
    assert source.reload_if_changed() is False and stale() == 1  # cannot be looked at ...
    policy_path.write_text(SHADOW_ALL)
    assert source.reload_if_changed() is True and stale() == 0  # ... then back (a new file: loaded again)
