"""The judgement calendar: between two turning days, every build and version is judged alike.

The worker's classification cache is keyed by the calendar's epoch instead of the day, so a status
that changed inside an epoch would be served stale. These tests hold the calendar to the
evaluators themselves: a build (or version) judged on any day equals the same build judged on the
first and the last day of that day's epoch, for the packaged catalogs and a policy with baselines
and other grace periods.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from hypothesis import example, given, settings
from hypothesis import strategies as st

from processors.classify.calendar import JudgementCalendar
from processors.classify.catalog import Catalog
from processors.classify.classifier import (
    default_catalog,
    default_policy,
    default_products,
    evaluator_for,
    product_evaluator_for,
)
from processors.classify.policy import ClassificationPolicy, parse_policy_text
from processors.classify.products import ProductCatalog

CATALOG, PRODUCTS = default_catalog(), default_products()
OTHER_POLICY = parse_policy_text("""
[classification]
grace_days = 11
esu = true
[[classification.baselines]]
product = "Exchange Server 2019"
cu = "CU14"
min_build = "15.2.1544.25"
from = "2026-03-03"
[products.exim]
grace_days = 3
""")
POLICIES = [default_policy(), OTHER_POLICY]
DAYS = st.dates(min_value=date(2005, 1, 1), max_value=date(2032, 12, 31))
BUILDS = sorted(row.build for row in CATALOG.rows)
VERSIONS = sorted((product, row.version) for product, rows in PRODUCTS.releases.items() for row in rows)


def _edges(calendar: JudgementCalendar, day: date) -> list[date]:
    first, last = calendar.span(day.toordinal())
    return [date.fromordinal(d) for d in (first, last) if d is not None]


def _nearby(build: tuple[int, ...], bump: int) -> tuple[int, ...]:
    """A build the catalog may not list: the last number moved by ``bump``."""
    return (*build[:-1], max(0, build[-1] + bump))


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(BUILDS), st.integers(-3, 3), DAYS, st.sampled_from(POLICIES))
@example(BUILDS[-1], 0, date(2026, 3, 3), OTHER_POLICY)
def test_a_build_is_judged_alike_on_every_day_of_an_epoch(build: tuple[int, ...], bump: int, day: date,
                                                           policy: ClassificationPolicy) -> None:
    calendar = JudgementCalendar(CATALOG, policy, PRODUCTS)
    evaluate = evaluator_for(CATALOG, policy).evaluate
    build = _nearby(build, bump)
    verdict = evaluate(build, day)
    for other in _edges(calendar, day):
        assert evaluate(build, other) == verdict, (build, day, other)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(VERSIONS), DAYS, st.sampled_from(POLICIES))
def test_a_product_version_is_judged_alike_on_every_day_of_an_epoch(version: tuple[str, str], day: date,
                                                                    policy: ClassificationPolicy) -> None:
    calendar = JudgementCalendar(CATALOG, policy, PRODUCTS)
    evaluate = product_evaluator_for(PRODUCTS, policy).evaluate
    verdict = evaluate(*version, day)
    for other in _edges(calendar, day):
        assert evaluate(*version, other) == verdict, (version, day, other)


def test_every_release_and_its_grace_period_turn_a_day() -> None:
    """Each catalog row's release day and the day after its grace period start an epoch (a
    calendar without them fails the property tests above)."""
    for policy in POLICIES:
        calendar = JudgementCalendar(CATALOG, policy, PRODUCTS)
        for row in CATALOG.rows:
            for turning in (row.release_date, row.release_date + timedelta(days=policy.grace_days + 1)):
                assert calendar.epoch(turning.toordinal()) == calendar.epoch(turning.toordinal() - 1) + 1 \
                    or calendar.span(turning.toordinal())[0] == turning.toordinal(), (row, turning)


def test_a_date_a_catalog_adds_later_is_a_turning_day_without_a_list_of_fields() -> None:
    """Dates are collected from the loaded objects (reflection), so a new date field counts."""
    far = date(2040, 6, 1)
    before = JudgementCalendar(CATALOG, default_policy(), PRODUCTS)
    row = CATALOG.rows[0]
    extended = Catalog(rows=(*CATALOG.rows, replace(row, release_date=far)),
                       lifecycle=CATALOG.lifecycle, sha256="x", source="test", _by_build={}, _by_group={},
                       _by_product={}, _by_build_number={})
    after = JudgementCalendar(extended, default_policy(), ProductCatalog(releases={}, sha256="", source="",
                                                                         _by_version={}, _public_by={}))
    assert before.epoch(far.toordinal()) == before.epoch(far.toordinal() - 1)
    assert after.epoch(far.toordinal()) == after.epoch(far.toordinal() - 1) + 1


def test_around_every_end_of_support_each_product_is_judged_alike_within_an_epoch() -> None:
    """The days around every lifecycle date and product end of support, for a build of every CU
    and every version of the product: where random days rarely land."""
    for policy in POLICIES:
        calendar = JudgementCalendar(CATALOG, policy, PRODUCTS)
        evaluate, evaluate_version = evaluator_for(CATALOG, policy).evaluate, \
            product_evaluator_for(PRODUCTS, policy).evaluate
        for product, lifecycle in CATALOG.lifecycle.items():
            builds = {row.group: row.build for row in CATALOG.rows if row.product == product}.values()
            for when in (lifecycle.start_date, lifecycle.mainstream_end, lifecycle.extended_end, lifecycle.esu_end):
                for day in _around(when):
                    for build in builds:
                        assert all(evaluate(build, edge) == evaluate(build, day) for edge in _edges(calendar, day))
        for name, rows in PRODUCTS.releases.items():
            for when in {row.end_of_support for row in rows} | {row.released for row in rows}:
                for day in _around(when):
                    for row in rows:
                        verdict = evaluate_version(name, row.version, day)
                        assert all(evaluate_version(name, row.version, edge) == verdict
                                   for edge in _edges(calendar, day)), (name, row.version, day)


def _around(when: date | None) -> list[date]:
    return [] if when is None else [when + timedelta(days=k) for k in (-1, 0, 1, 2)]
