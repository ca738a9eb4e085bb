"""patchgate's exceptions share the root PatchgateError and keep the builtin base they had."""

from __future__ import annotations

import pytest

from processors.classify.catalog import CatalogFormatError
from processors.classify.cli import InputError
from processors.classify.policy import PolicyError as ClassificationPolicyError
from processors.classify.policy import parse_policy_text
from processors.contracts.compiler import ContractError, SchemaCompileError
from processors.enforcement.policy import PolicyError as EnforcementPolicyError
from processors.enforcement.policy import enforcement_policy_from_mapping
from processors.errors import PatchgateError
from processors.settings import Settings, SettingsError

VALUE_ERRORS: list[type[Exception]] = [
    ClassificationPolicyError, CatalogFormatError, EnforcementPolicyError, ContractError, SettingsError,
]
OTHER_ERRORS: list[type[Exception]] = [InputError, SchemaCompileError]


@pytest.mark.parametrize("error", VALUE_ERRORS + OTHER_ERRORS, ids=lambda e: f"{e.__module__}.{e.__name__}")
def test_every_error_is_a_patchgate_error(error: type[Exception]) -> None:
    assert issubclass(error, PatchgateError)


@pytest.mark.parametrize("error", VALUE_ERRORS, ids=lambda e: f"{e.__module__}.{e.__name__}")
def test_value_errors_are_still_value_errors(error: type[Exception]) -> None:
    assert issubclass(error, ValueError)


@pytest.mark.parametrize("error", OTHER_ERRORS, ids=lambda e: f"{e.__module__}.{e.__name__}")
def test_other_errors_did_not_become_value_errors(error: type[Exception]) -> None:
    assert not issubclass(error, ValueError)


def test_raised_errors_are_caught_by_either_base() -> None:
    with pytest.raises(PatchgateError, match=r"classification\.grace_days: must be an integer 0\.\.365, got -3"):
        parse_policy_text("[classification]\ngrace_days = -3\n")
    with pytest.raises(ValueError, match="enforcement: the policy file needs a"):
        enforcement_policy_from_mapping({})
    with pytest.raises(PatchgateError, match="PATCHGATE_BATCH_MAX_MESSAGES: expected a number"):
        Settings.from_env({"PATCHGATE_BATCH_MAX_MESSAGES": "many"})
