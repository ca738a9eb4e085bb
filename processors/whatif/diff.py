"""``patchgate whatif --policy new.toml --against current.toml``: two simulations of the same input
in one pass, compared message for message.

Both simulations take every record in the same order; each message's two answers are paired by
its position in the input, so the result counts exactly how many messages move from accepted,
deferred or rejected under the current policy to each answer under the new one, per tenant, and
lists the servers whose stage changes (dates, stages, minutes per hour) differ. Pairs wait only
until both simulations answered (at most a batch of each), so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from processors.events.times import rfc3339
from processors.settings import Settings
from processors.whatif.model import ANSWERS, Prediction, ServerResult, StageChange
from processors.whatif.sources import Progress


@dataclass(slots=True)
class Comparison:
    new: Prediction
    current: Prediction
    #: tenant -> 3x3 matrix [current answer][new answer] of message counts
    moves: dict[str, list[list[int]]] = field(default_factory=dict)

    def changed_servers(self) -> list[tuple[str, list[StageChange], list[StageChange]]]:
        """(server key, stages now, stages with the new policy) where the two differ."""
        changed = []
        for key in sorted(set(self.new.servers) | set(self.current.servers)):
            now = _stages(self.current.servers.get(key))
            new = _stages(self.new.servers.get(key))
            if now != new:
                changed.append((key, now, new))
        return changed


def _stages(result: ServerResult | None) -> list[StageChange]:
    return list(result.stages) if result is not None else []


class _Pairs:
    """Answers of the two simulations, matched by the record's serial number."""

    def __init__(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.waiting: list[dict[int, tuple[str, int | None]]] = [{}, {}]  # [current, new]

    def side(self, which: int) -> Callable[[int, str, int | None], None]:
        def answered(serial: int, server_key: str, answer: int | None) -> None:
            other = self.waiting[1 - which].pop(serial, None)
            if other is None:
                self.waiting[which][serial] = (server_key, answer)
                return
            answers = (answer, other[1]) if which == 0 else (other[1], answer)
            if answers[0] is not None and answers[1] is not None:
                tenant = server_key.partition("/")[0]
                matrix = self.comparison.moves.setdefault(tenant, [[0, 0, 0], [0, 0, 0], [0, 0, 0]])
                matrix[answers[0]][answers[1]] += 1
        return answered


async def compare(open_source: Callable[[Progress], Iterable[Any]], commands: list[tuple[str, bytes]], *,
                  new: Path | None, current: Path | None, catalog: Path | None = None,
                  products_dir: Path | None = None, enforce_from: datetime | None = None,
                  settings: Settings | None = None) -> Comparison:
    """Simulate the input under ``current`` and ``new`` (policy files; None: the packaged one)."""
    from processors.whatif.simulate import Simulation, parse_commands, simulate

    sims = []
    comparison = Comparison(Prediction(), Prediction())
    pairs = _Pairs(comparison)
    for which, policy in enumerate((current, new)):
        sims.append(Simulation(policy_file=policy, catalog_file=catalog, products_dir=products_dir,
                               enforce_from=enforce_from, settings=settings, on_answer=pairs.side(which)))
    for sim in sims:
        sim.start(parse_commands(commands, sim.settings.topic_commands, sim.prediction))
    comparison.current, comparison.new = await simulate(open_source(Progress()), sims)
    return comparison


def _stage_list(stages: list[StageChange]) -> list[dict[str, Any]]:
    return [{"at": rfc3339(s.at), "stage": s.stage, "throttle_minutes": s.throttle_minutes,
             "block_minutes": s.block_minutes} for s in stages]


def diff_json(comparison: Comparison) -> bytes:
    document = {
        "schema": "patchgate.whatif-diff/1",
        "records": comparison.new.records,
        "skipped": comparison.new.skipped,
        "servers": [{"server_key": key, "stages_current": _stage_list(now), "stages_new": _stage_list(new)}
                    for key, now, new in comparison.changed_servers()],
        "moves": {tenant: {f"{ANSWERS[a]}->{ANSWERS[b]}": matrix[a][b] for a in range(3) for b in range(3)
                           if a != b and matrix[a][b]}
                  for tenant, matrix in sorted(comparison.moves.items())},
        "messages_current": _totals(comparison.current),
        "messages_new": _totals(comparison.new),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def _totals(prediction: Prediction) -> dict[str, int]:
    totals = [0, 0, 0]
    for result in prediction.servers.values():
        for index, count in enumerate(result.totals()):
            totals[index] += count
    return dict(zip(ANSWERS, totals, strict=True))


def _describe(stages: list[StageChange]) -> str:
    shown = [f"{s.at:%Y-%m-%d} stage {s.stage} ({s.throttle_minutes}/{s.block_minutes})" for s in stages
             if s.stage > 0 or s is not stages[0]]
    return "; ".join(shown) or "never enforced"


def diff_table(comparison: Comparison) -> str:
    out = [f"{comparison.new.records} messages compared ({comparison.new.skipped} records skipped).", ""]
    changed = comparison.changed_servers()
    out.append(f"Servers whose stage changes differ: {len(changed)}")
    for key, now, new in changed:
        out.append(f"  {''.join(c if c.isprintable() else '?' for c in key)}")
        out.append(f"    current: {_describe(now)}")
        out.append(f"    new:     {_describe(new)}")
    out.append("")
    out.append("Messages that move (current -> new), per tenant (throttle/block minutes per hour in brackets above):")
    any_move = False
    for tenant, matrix in sorted(comparison.moves.items()):
        moves = [f"{matrix[a][b]} {ANSWERS[a]} -> {ANSWERS[b]}" for a in range(3) for b in range(3)
                 if a != b and matrix[a][b]]
        if moves:
            any_move = True
            out.append(f"  {tenant}: {', '.join(moves)}")
    if not any_move:
        out.append("  none")
    return "\n".join(out) + "\n"
