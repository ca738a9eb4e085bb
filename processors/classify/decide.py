"""Status decisions for an on-premises Exchange build on a given day.

:class:`Evaluator` turns ``(build, day)`` into a :class:`Verdict` using the catalog and the policy.
Rules are tried in this order; the first that applies decides (its name is the verdict's ``rule``):

1. ``end_of_support`` (unsupported): the product is past its extended end on ``day`` (with
   ``esu = true``: past the end of the ``esu_end`` month, or on a CU not serviced at the extended
   end). Lifecycle is a product fact, so it applies to unknown builds of the product too.
2. ``unknown_build`` / ``unknown_product``: the build is not in the catalog and its CU cannot be told
   from its build number; never vulnerable (a newer CU the catalog does not know yet must not be
   blocked).
3. ``current_cu`` (unsupported): Modern-lifecycle products (Exchange SE) support only the current
   CU; an older CU is unsupported once a newer CU has been public for more than ``grace_days``.
4. ``cu_unserviced`` (unsupported): the CU no longer gets security updates (see
   :meth:`Evaluator.serviced_groups`).
5. ``baseline`` (behind): below the policy's explicit floor for the CU.
6. ``grace_period`` (behind): a newer security update for the CU has been public > ``grace_days``.
7. Otherwise ``current``: rule ``within_grace`` (a newer update exists but is still within the grace
   period), ``latest_su`` (nothing newer for the CU), ``sp_level`` (2007/2010 build matched only on
   its SP level), or ``unknown_build`` (unknown revision of a known CU that no rule above flags; status
   ``unknown_build``).

Exchange 2007/2010 Received ids often carry revisions or even build numbers that no rollup has
(14.3.487.0); such builds are matched to their SP level (major.minor) only and no RU-level rule is
applied to them. Verdicts are memoised per ``(build, day)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from processors.classify.catalog import (
    SP_LEVEL_PRODUCTS,
    BuildRow,
    BuildTuple,
    Catalog,
    format_long,
    format_short,
    product_for_build,
)
from processors.classify.policy import ClassificationPolicy

CURRENT = "current"
BEHIND = "behind"
UNSUPPORTED = "unsupported"
UNKNOWN_BUILD = "unknown_build"
NOT_EXCHANGE = "not_exchange"
NO_BUILD = "no_build"
CLOUD = "cloud"
STATUSES: tuple[str, ...] = (CURRENT, BEHIND, UNSUPPORTED, UNKNOWN_BUILD, NOT_EXCHANGE, NO_BUILD, CLOUD)
VULNERABLE_STATUSES: frozenset[str] = frozenset({BEHIND, UNSUPPORTED})

#: Updates released within this many days before a product's newest (grace-aged) update belong to
#: the same wave (v2 re-releases, staggered CU releases).
WAVE_WINDOW_DAYS = 31
#: Fallback when a product has no security-update wave: this many newest CUs count as serviced.
FALLBACK_SERVICED_CUS = 2
#: Size of the per-(build, day) verdict cache.
VERDICT_CACHE_SIZE = 16384


@dataclass(frozen=True, slots=True)
class RecommendedBuild:
    """An acceptable build, in both formats, with its release name."""

    short: str
    long: str
    name: str

    def to_json_dict(self) -> dict[str, str]:
        return {"short": self.short, "long": self.long, "name": self.name}


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    """The decision for one build on one day (independent of the server name)."""

    status: str
    rule: str
    reason: str
    product: str | None
    release_name: str | None
    recommended_builds: tuple[RecommendedBuild, ...]
    build: str
    build_long: str


@dataclass(frozen=True, kw_only=True, slots=True)
class _Placement:
    """Where a build sits in the catalog, as the rules see it."""

    build: BuildTuple
    short: str
    long: str
    product: str
    #: the build's own catalog row; ``None`` for a build the catalog does not list
    row: BuildRow | None
    #: its CU (SP level for 2007/2010); ``None`` when it cannot be told from the build number
    group: str | None
    #: the row's release name, else ``"<product> <group>"`` (``None`` without a group)
    name: str | None
    #: a 2007/2010 build matched on its SP level (major.minor) only
    sp_level_only: bool
    #: the day judged: the observation day, or the build's release day if it was seen before it
    day: date

    @property
    def label(self) -> str:
        return self.name or self.short


def _rec(row: BuildRow) -> RecommendedBuild:
    return RecommendedBuild(short=row.short, long=row.long, name=row.release_name)


class Evaluator:
    """Decides build statuses for one (catalog, policy) pair. Thread-compatible (pure + LRU)."""

    def __init__(self, catalog: Catalog, policy: ClassificationPolicy) -> None:
        self.catalog = catalog
        self.policy = policy
        self.evaluate = lru_cache(maxsize=VERDICT_CACHE_SIZE)(self._evaluate)
        self._serviced = lru_cache(maxsize=1024)(self._serviced_groups)
        self._acceptable = lru_cache(maxsize=1024)(self._acceptable_rows)
        self._target = lru_cache(maxsize=256)(self._upgrade_recommendation)

    # ------------------------------------------------------------------------------ building blocks

    def _aged(self, row: BuildRow, day: date) -> bool:
        """True if ``row`` has been public for more than the grace period on ``day``."""
        return (day - row.release_date).days > self.policy.grace_days

    def _security_rows(self, product: str) -> list[BuildRow]:
        kinds = self.policy.security_kinds
        return [r for r in self.catalog.product_rows(product) if r.kind in kinds]

    def _group_first_release(self, product: str) -> dict[str, date]:
        first: dict[str, date] = {}
        for r in self.catalog.product_rows(product):
            if r.group not in first or r.release_date < first[r.group]:
                first[r.group] = r.release_date
        return first

    def serviced_groups(self, product: str, day: date) -> frozenset[str]:
        """CUs (SP levels for 2007/2010) of ``product`` still serviced on ``day``.

        Explicit ``serviced_cus`` in the policy win. Otherwise: take the product's security updates
        that are older than the grace period on ``day``; the newest of them dates the latest wave W;
        every CU that got an update in ``[W - WAVE_WINDOW_DAYS, W]`` is serviced, and so is every CU
        first released after W. Without any such update: the ``FALLBACK_SERVICED_CUS`` newest CUs
        released by ``day``. Modern-lifecycle products (SE) instead keep only the current CU: older
        CUs drop out once a newer CU has been public for more than the grace period.
        """
        return self._serviced(product, day)

    def _serviced_groups(self, product: str, day: date) -> frozenset[str]:
        explicit = self.policy.serviced_cus.get(product)
        if explicit is not None:
            return explicit
        first = self._group_first_release(product)
        released = {g: d for g, d in first.items() if d <= day}
        lc = self.catalog.lifecycle.get(product)
        if lc is not None and lc.policy == "Modern":
            aged = [g for g, d in released.items() if (day - d).days > self.policy.grace_days]
            if not aged:
                return frozenset(released)
            current = max(aged, key=lambda g: released[g])
            cut = released[current]
            return frozenset(g for g, d in released.items() if d >= cut)
        updates = [r for r in self._security_rows(product) if self._aged(r, day)]
        if updates:
            wave = max(r.release_date for r in updates)
            groups = {r.group for r in updates if (wave - r.release_date).days <= WAVE_WINDOW_DAYS}
            groups.update(g for g, d in released.items() if d > wave)
            return frozenset(groups)
        newest = sorted(released, key=lambda g: released[g], reverse=True)
        return frozenset(newest[:FALLBACK_SERVICED_CUS])

    def _required(self, product: str, group: str, day: date) -> tuple[BuildRow | None, BuildTuple | None]:
        """The newest grace-aged security update of a CU, and the baseline floor, on ``day``."""
        kinds = self.policy.security_kinds
        required: BuildRow | None = None
        for r in self.catalog.group_rows(product, group):
            if r.kind in kinds and self._aged(r, day) and (required is None or r.build > required.build):
                required = r
        base = self.policy.baseline_for(product, group, day)
        return required, (base.min_build if base is not None else None)

    def _acceptable_rows(self, product: str, group: str, day: date) -> tuple[RecommendedBuild, ...]:
        """Catalog builds of a CU that are acceptable (current) on ``day``, oldest first."""
        required, floor = self._required(product, group, day)
        lo = required.build if required is not None else None
        if floor is not None and (lo is None or floor > lo):
            lo = floor
        rows = [
            r
            for r in self.catalog.group_rows(product, group)
            if r.release_date <= day and (lo is None or r.build >= lo)
        ]
        if not rows and lo is None:
            return ()
        return tuple(_rec(r) for r in rows)

    def _product_supported(self, product: str, day: date) -> bool:
        lc = self.catalog.lifecycle.get(product)
        if lc is None or lc.start_date > day:
            return False
        end = lc.extended_end
        if end is not None and day > end:
            return bool(self.policy.esu and lc.esu_end is not None and day <= lc.esu_end)
        return True

    def _newest_serviced_recommendation(self, product: str, day: date) -> tuple[RecommendedBuild, ...]:
        serviced = self.serviced_groups(product, day)
        order = [g for g in reversed(self.catalog.groups(product)) if g in serviced]
        for group in order:
            recs = self._acceptable(product, group, day)
            if recs:
                return recs
        return ()

    def _upgrade_recommendation(self, day: date) -> tuple[RecommendedBuild, ...]:
        for product in self.policy.upgrade_targets:
            if self._product_supported(product, day):
                recs = self._newest_serviced_recommendation(product, day)
                if recs:
                    return recs
        return ()

    # ------------------------------------------------------------------------------------ decision

    def _evaluate(self, build: BuildTuple, day: date) -> Verdict:
        """Apply the rules in the order of the module docstring; the first that applies decides."""
        product = product_for_build(build)
        if product is None:
            return _unknown_product(build)
        placed = self._place(build, product, day)
        ended = self._end_of_support(placed)
        if ended is not None:
            return ended
        group = placed.group
        if group is None:
            return self._unknown_build(placed)
        return (
            self._unserviced_cu(placed, group)
            or self._sp_level(placed, group)
            or self._judge_within_cu(placed, group)
        )

    def _place(self, build: BuildTuple, product: str, day: date) -> _Placement:
        """Find the build's CU (SP level for 2007/2010) and release name in the catalog."""
        row = self.catalog.lookup(build)
        sp_level_only = row is None and product in SP_LEVEL_PRODUCTS
        if row is not None:
            # seen before its catalog date (clock skew, time zones, replayed history): judge it
            # as of its release day, when it was the newest build of its CU
            day = max(day, row.release_date)
            group: str | None = row.group
            name: str | None = row.release_name
        else:
            group = self._sp_level_group(build, product) if sp_level_only else self.catalog.group_of_build_number(build)
            name = f"{product} {group}" if group else None
        return _Placement(
            build=build,
            short=format_short(build),
            long=format_long(build),
            product=product,
            row=row,
            group=group,
            name=name,
            sp_level_only=sp_level_only,
            day=day,
        )

    def _sp_level_group(self, build: BuildTuple, product: str) -> str | None:
        """A 2007/2010 build's SP level: the group of the newest row of its major.minor at or below
        the build, else of that SP level's first row (``None`` if the catalog has no such row)."""
        same_sp = [r for r in self.catalog.product_rows(product) if r.build[:2] == build[:2]]
        below = [r for r in same_sp if r.build <= build]
        anchor = below[-1] if below else (same_sp[0] if same_sp else None)
        return anchor.group if anchor is not None else None

    def _end_of_support(self, placed: _Placement) -> Verdict | None:
        """Rule ``end_of_support``: the product is past its extended end (and, with ESU, past the end
        of ESU or on a CU that ESU does not cover)."""
        lc = self.catalog.lifecycle.get(placed.product)
        end = lc.extended_end if lc is not None else None
        if lc is None or end is None or placed.day <= end:
            return None
        esu_end = lc.esu_end
        if self.policy.esu and esu_end is not None and placed.day <= esu_end:
            return self._outside_esu(placed, end)
        until = f"ESU ended {esu_end.isoformat()}" if self.policy.esu and esu_end is not None else "no ESU"
        reason = f"{placed.product} reached end of support on {end.isoformat()} ({until})."
        return _verdict(placed, UNSUPPORTED, "end_of_support", reason, self._target(placed.day))

    def _outside_esu(self, placed: _Placement, end: date) -> Verdict | None:
        """Within ESU only the CUs serviced on the product's extended end date stay supported."""
        esu_groups = self.serviced_groups(placed.product, end)
        if placed.group is not None and placed.group in esu_groups:
            return None
        reason = (
            f"{placed.name or placed.product} is past end of support ({end.isoformat()}) and its CU is "
            f"not covered by Extended Security Updates ({', '.join(sorted(esu_groups))})."
        )
        return _verdict(placed, UNSUPPORTED, "end_of_support", reason, self._target(placed.day))

    def _unknown_build(self, placed: _Placement) -> Verdict:
        """Rule ``unknown_build``: the build's CU cannot be told, so it is never judged vulnerable."""
        reason = f"Build {placed.short} looks like {placed.product} but is not in the build catalog."
        recs = self._newest_serviced_recommendation(placed.product, placed.day)
        return _verdict(placed, UNKNOWN_BUILD, "unknown_build", reason, recs)

    def _unserviced_cu(self, placed: _Placement, group: str) -> Verdict | None:
        """Rules ``current_cu`` (Modern lifecycle: only the current CU is supported) and
        ``cu_unserviced`` (the CU no longer gets security updates)."""
        product = placed.product
        serviced = self.serviced_groups(product, placed.day)
        if group in serviced:
            return None
        lc = self.catalog.lifecycle.get(product)
        modern = lc is not None and lc.policy == "Modern"
        current = ", ".join(g for g in self.catalog.groups(product) if g in serviced) or "none"
        if modern:
            reason = (
                f"Only the current CU of {product} is supported and {placed.name} is not on it (current: {current})."
            )
        else:
            reason = f"{product} {group} no longer receives security updates (serviced: {current})."
        recs = self._newest_serviced_recommendation(product, placed.day)
        return _verdict(placed, UNSUPPORTED, "current_cu" if modern else "cu_unserviced", reason, recs)

    def _sp_level(self, placed: _Placement, group: str) -> Verdict | None:
        """Rule ``sp_level``: a 2007/2010 build matched on its (serviced) SP level only is current."""
        if not placed.sp_level_only:
            return None
        reason = f"Build {placed.short} matched on its service pack level only: {placed.name}, which is still serviced."
        return _verdict(placed, CURRENT, "sp_level", reason, self._acceptable(placed.product, group, placed.day))

    def _judge_within_cu(self, placed: _Placement, group: str) -> Verdict:
        """The build's CU is serviced: compare the build with the CU's floor and its updates."""
        recs = self._acceptable(placed.product, group, placed.day)
        required, floor = self._required(placed.product, group, placed.day)
        return (
            self._below_baseline(placed, group, floor, recs)
            or self._past_grace_period(placed, required, recs)
            or self._unknown_revision(placed, group, recs)
            or self._up_to_date(placed, group, recs)
        )

    def _below_baseline(
        self, placed: _Placement, group: str, floor: BuildTuple | None, recs: tuple[RecommendedBuild, ...]
    ) -> Verdict | None:
        """Rule ``baseline``: below the policy's explicit floor for the CU."""
        if floor is None or placed.build >= floor:
            return None
        reason = (
            f"{placed.label} ({placed.short}) is below the policy baseline {format_short(floor)} "
            f"for {placed.product} {group}."
        )
        return _verdict(placed, BEHIND, "baseline", reason, recs)

    def _past_grace_period(
        self, placed: _Placement, required: BuildRow | None, recs: tuple[RecommendedBuild, ...]
    ) -> Verdict | None:
        """Rule ``grace_period``: a newer security update for the CU is public for longer than the grace period."""
        if required is None or placed.build >= required.build:
            return None
        reason = (  # dates, not an age in days: a verdict's text is the same on every day it holds
            f"{placed.label} ({placed.short}) is behind: {required.release_name} ({required.short}) has been "
            f"public since {required.release_date.isoformat()}, more than the {self.policy.grace_days}-day "
            "grace period."
        )
        return _verdict(placed, BEHIND, "grace_period", reason, recs)

    @staticmethod
    def _unknown_revision(placed: _Placement, group: str, recs: tuple[RecommendedBuild, ...]) -> Verdict | None:
        """Rule ``unknown_build`` (not vulnerable): an unknown revision of a known CU that no rule above flags."""
        if placed.row is not None:
            return None
        reason = f"Build {placed.short} is an unknown revision of {placed.product} {group} (not in the build catalog)."
        return _verdict(placed, UNKNOWN_BUILD, "unknown_build", reason, recs)

    def _up_to_date(self, placed: _Placement, group: str, recs: tuple[RecommendedBuild, ...]) -> Verdict:
        """Rules ``within_grace`` (a newer update is still within the grace period) and ``latest_su``."""
        kinds = self.policy.security_kinds
        pending = [
            r
            for r in self.catalog.group_rows(placed.product, group)
            if r.kind in kinds and r.build > placed.build and r.release_date <= placed.day
        ]
        if not pending:
            reason = f"{placed.label} ({placed.short}) has the newest security update for {placed.product} {group}."
            return _verdict(placed, CURRENT, "latest_su", reason, recs)
        newest = pending[-1]
        reason = (
            f"{placed.label} ({placed.short}): the newer {newest.release_name} ({newest.short}), public since "
            f"{newest.release_date.isoformat()}, is within the {self.policy.grace_days}-day grace period."
        )
        return _verdict(placed, CURRENT, "within_grace", reason, recs)


def _verdict(
    placed: _Placement, status: str, rule: str, reason: str, recommended: tuple[RecommendedBuild, ...]
) -> Verdict:
    """The verdict of a rule that decided about a placed build."""
    return Verdict(
        status=status,
        rule=rule,
        reason=reason,
        product=placed.product,
        release_name=placed.name,
        recommended_builds=recommended,
        build=placed.short,
        build_long=placed.long,
    )


def _unknown_product(build: BuildTuple) -> Verdict:
    """Rule ``unknown_product``: major.minor names no Exchange Server product; never vulnerable."""
    short = format_short(build)
    return Verdict(
        status=UNKNOWN_BUILD,
        rule="unknown_product",
        reason=f"Build {short} ({format_long(build)}) matches no Exchange Server product.",
        product=None,
        release_name=None,
        recommended_builds=(),
        build=short,
        build_long=format_long(build),
    )
