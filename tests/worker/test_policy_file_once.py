"""The policy file is read and parsed once per load, and gives the same policies as each half's loader."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from processors import policyfile
from processors.classify import PolicyError, load_policy
from processors.enforcement.policy import load_enforcement_policy
from processors.worker.policies import PolicySource, load_policies


def test_both_halves_from_one_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[int] = []
    real = tomllib.loads

    def counting(text: str, **kwargs: Any) -> dict[str, Any]:
        parsed.append(len(text))
        return real(text, **kwargs)

    monkeypatch.setattr(policyfile.tomllib, "loads", counting)
    source = PolicySource()
    assert len(parsed) == 1
    monkeypatch.undo()
    assert source.current.classification == load_policy()
    assert source.current.enforcement == load_enforcement_policy()


def test_a_file_that_is_not_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[enforcement\n")
    with pytest.raises(PolicyError) as error:
        load_policies(path)
    assert str(error.value).startswith(f"{path}: invalid TOML")
