"""The enforcement records with many fields are keyword-only."""

from __future__ import annotations

import dataclasses

import pytest

from processors.enforcement.policy import EnforcementPolicy
from processors.enforcement.verdicts import Evaluation, ServerState


@pytest.mark.parametrize("record", [EnforcementPolicy, ServerState, Evaluation], ids=lambda r: r.__name__)
def test_wide_records_refuse_positional_fields(record: type) -> None:
    count = len(dataclasses.fields(record))
    with pytest.raises(TypeError, match="positional argument"):
        record(*range(count))
