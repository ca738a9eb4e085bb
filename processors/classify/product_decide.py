"""Status decisions for a version of a product other than Exchange, on a given day.

:class:`ProductEvaluator` turns ``(product, version, day)`` into a :class:`ProductVerdict` from the
product catalog and the product's policy. Rules, first that applies decides:

1. ``unknown_build`` (rule ``unknown_version``): the version is not in the catalog; never vulnerable.
2. ``unsupported`` (rule ``end_of_support``): the release's end of support is before ``day``.
3. ``behind`` (rule ``grace_period``): a newer security release of the same line (the first
   ``line_parts`` version numbers) has been public for more than the product's ``grace_days``
   (a release without a published date counts as public from the first date of a later version,
   :meth:`ProductCatalog.public_by`; one with neither never ages).
4. ``current``: rule ``within_grace`` (such a release exists but is younger) or ``latest_release``.

``enforced`` says whether a vulnerable verdict may be enforced: the product's policy decides, and a
report-only product's reason carries the policy note (why its version does not prove the patch
level). Verdicts are memoised per ``(product, version, day)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from processors.classify.decide import BEHIND, CURRENT, UNKNOWN_BUILD, UNSUPPORTED, RecommendedBuild
from processors.classify.policy import ClassificationPolicy
from processors.classify.product_policy import ProductPolicy
from processors.classify.products import PRODUCT_NAMES, ProductCatalog, ProductRelease, padded

VERDICT_CACHE_SIZE = 4096


@dataclass(frozen=True, kw_only=True, slots=True)
class ProductVerdict:
    """The decision for one product version on one day."""

    status: str
    rule: str
    reason: str
    product_name: str
    release_name: str | None
    recommended: tuple[RecommendedBuild, ...]
    enforced: bool


def _rec(row: ProductRelease) -> RecommendedBuild:
    return RecommendedBuild(short=row.version, long=row.version, name=row.display)


class ProductEvaluator:
    """Decides product version statuses for one (product catalog, policy) pair."""

    def __init__(self, catalog: ProductCatalog, policy: ClassificationPolicy) -> None:
        self.catalog = catalog
        self.policy = policy
        self.evaluate = lru_cache(maxsize=VERDICT_CACHE_SIZE)(self._evaluate)

    def _public(self, row: ProductRelease, day: date) -> bool:
        when = self.catalog.public_by(row)
        return when is not None and when <= day

    def _aged(self, row: ProductRelease, day: date, grace_days: int) -> bool:
        when = self.catalog.public_by(row)
        return when is not None and (day - when).days > grace_days

    def _policy(self, product: str) -> ProductPolicy:
        found = self.policy.products.get(product)
        return found if found is not None else ProductPolicy(enforce=False)

    def _evaluate(self, product: str, version: str, day: date) -> ProductVerdict:
        name = PRODUCT_NAMES.get(product, product)
        pol = self._policy(product)
        row = self.catalog.lookup(product, version)
        if row is None:
            reason = f"{name} {version} is not in the product catalog, so it is not judged."
            return self._verdict(pol, name, None, UNKNOWN_BUILD, "unknown_version", reason, self._newest(product, day))
        if row.end_of_support is not None and day > row.end_of_support:
            reason = f"{row.display} reached end of support on {row.end_of_support.isoformat()}."
            recs = self._newest(product, day, above=row)
            return self._verdict(pol, name, row, UNSUPPORTED, "end_of_support", reason, recs)
        return self._within_line(pol, name, row, day)

    def _within_line(self, pol: ProductPolicy, name: str, row: ProductRelease, day: date) -> ProductVerdict:
        newer = [r for r in self._line(row, pol.line_parts) if padded(r.key) > padded(row.key) and self._public(r, day)]
        fixes = [r for r in newer if r.security == "yes"]
        aged = [r for r in fixes if self._aged(r, day, pol.grace_days)]
        recs = tuple(_rec(r) for r in newer if not aged or padded(r.key) >= padded(aged[-1].key))
        if aged:
            fix = aged[-1]
            cves = f" (fixes {', '.join(fix.fixes)})" if fix.fixes else ""
            reason = (
                f"{row.display} is behind: the security release {fix.version}{cves} has been public for more "
                f"than the {pol.grace_days}-day grace period."
            )
            return self._verdict(pol, name, row, BEHIND, "grace_period", reason, recs)
        if fixes:
            reason = f"{row.display}: the newer security release {fixes[-1].version} is within the grace period."
            return self._verdict(pol, name, row, CURRENT, "within_grace", reason, (_rec(row), *recs))
        reason = f"{row.display} has no newer security release in its line."
        return self._verdict(pol, name, row, CURRENT, "latest_release", reason, (_rec(row), *recs))

    def _line(self, row: ProductRelease, parts: int) -> list[ProductRelease]:
        prefix = row.key[:parts]
        return [r for r in self.catalog.product_releases(row.product) if r.key[:parts] == prefix]

    def _newest(self, product: str, day: date, above: ProductRelease | None = None) -> tuple[RecommendedBuild, ...]:
        """The newest public release still in support on ``day`` (what to install); with ``above``,
        only one newer than that release (never a downgrade), else none."""
        for r in reversed(self.catalog.product_releases(product)):
            if above is not None and padded(r.key) <= padded(above.key):
                return ()
            if self._public(r, day) and (r.end_of_support is None or r.end_of_support >= day):
                return (_rec(r),)
        return ()

    @staticmethod
    def _verdict(
        pol: ProductPolicy,
        name: str,
        row: ProductRelease | None,
        status: str,
        rule: str,
        reason: str,
        recs: tuple[RecommendedBuild, ...],
    ) -> ProductVerdict:
        vulnerable = status in (BEHIND, UNSUPPORTED)
        if vulnerable and not pol.enforce and pol.note:
            reason = f"{reason} {pol.note}"
        elif vulnerable and not pol.enforce:
            reason = f"{reason} Report only: {name} is not enforced by policy."
        return ProductVerdict(
            status=status,
            rule=rule,
            reason=reason,
            product_name=name,
            release_name=row.display if row is not None else None,
            recommended=recs,
            enforced=pol.enforce,
        )
