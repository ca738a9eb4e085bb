"""The classifier's wide records are keyword-only, and the classifier builds them like the class does."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from processors.classify import Baseline, BuildRow, Catalog, Classification, ClassificationPolicy, Connection, classify
from processors.classify.catalog import LifecycleRow
from processors.classify.decide import Verdict

WIDE_RECORDS = [Classification, Verdict, ClassificationPolicy, Baseline, BuildRow, LifecycleRow, Catalog]


@pytest.mark.parametrize("record", WIDE_RECORDS, ids=lambda r: r.__name__)
def test_wide_records_refuse_positional_fields(record: type) -> None:
    count = len(dataclasses.fields(record))
    with pytest.raises(TypeError, match="positional argument"):
        record(*range(count))


def test_classifier_result_equals_the_class_built_from_its_fields() -> None:
    headers = [("Received", "from a by ex01.contoso.com with Microsoft SMTP Server id 15.2.1544.4; d"),
               ("Received", "from b by ex02.contoso.local with mapi id 15.2.1544.4; d")]
    for result in (classify(headers, Connection(ip="203.0.113.5"), datetime(2026, 11, 1, tzinfo=UTC)),
                   classify([], Connection(ip="203.0.113.5"), datetime(2026, 11, 1, tzinfo=UTC))):
        fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(Classification)}
        rebuilt = Classification(**fields)
        assert rebuilt == result
        assert rebuilt.to_json_dict() == result.to_json_dict()
        assert rebuilt.context_raw == result.context_raw


def test_positional_builder_sets_every_field_like_the_class() -> None:
    import inspect

    from processors.classify.classifier import _build_classification

    names = [f.name for f in dataclasses.fields(Classification)]
    assert list(inspect.signature(_build_classification).parameters) == names
    values = {name: (f"value-{name}",) for name in names}
    built = _build_classification(*values.values())  # type: ignore[arg-type]
    assert built == Classification(**values)  # type: ignore[arg-type]
    assert all(getattr(built, name) == values[name] for name in names)
