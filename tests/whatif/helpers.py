"""Shared by the whatif tests: the shipped sample as files, the edge's answers to a recording given
the verdicts a pipeline published, and the simulator's answers message by message."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from edge.verdicts import VerdictIndex, compile_verdict, message_decision
from processors.classify import Connection, classify, server_key
from processors.enforcement.policy import load_enforcement_policy
from processors.events.command import Command, pause_command
from processors.replay.sample import steps
from processors.whatif.model import ANSWERS
from processors.whatif.simulate import Simulation, parse_commands
from processors.whatif.sources import Item, file_records, numbered_lines
from processors.worker.inprocess import load_policy_snapshot

TIGHTER_STAGES = """
[[enforcement.stages]]
stage = 1
start_day = 0
throttle_minutes = 20
block_minutes = 0

[[enforcement.stages]]
stage = 2
start_day = 15
throttle_minutes = 30
block_minutes = 15

[[enforcement.stages]]
stage = 3
start_day = 45
throttle_minutes = 0
block_minutes = 60

"""


def packaged_policy() -> str:
    return (Path(__file__).resolve().parents[2] / "processors" / "data" / "policy.toml").read_text()


def tighter_policy(folder: Path) -> Path:
    """The packaged policy with other stage days and minutes per hour (stage 1 already throttles)."""
    text = packaged_policy()
    start, end = text.index("[[enforcement.stages]]"), text.index("[pauses]")
    path = folder / "tighter.toml"
    path.write_text(text[:start] + TIGHTER_STAGES + text[end:])
    return path


def sample_commands() -> list[Command]:
    return [pause_command(tenant_id=step.tenant or "", action="pause_create", actor="replay", issued_at=step.at,
                          days=step.days, command_id=f"sample-pause-{index}")
            for index, step in enumerate(steps()) if step.kind == "pause"]


def sample_files(folder: Path) -> tuple[Path, Path]:
    """The 120-day sample's metadata (one record a line) and its pause commands, as whatif reads them."""
    records, commands = folder / "sample.jsonl", folder / "pauses.jsonl"
    records.write_bytes(b"".join(orjson.dumps(record) + b"\n" for step in steps() if step.kind == "mail"
                                 for _, record in step.records))
    commands.write_bytes(b"".join(orjson.dumps(command) + b"\n" for command in sample_commands()))
    return records, commands


def edge_answers(records: Iterable[Any], verdicts: Sequence[dict[str, Any]], policy_file: Path | None = None
                 ) -> dict[str, str]:
    """event_id -> what the real edge decision answers each message, following ``verdicts`` (as a
    pipeline published them) from their ``issued_at`` on, strictly before the message: the edge
    answers a message before the worker sees it, so the verdict a message causes never answers it."""
    snapshot = load_policy_snapshot(policy_file)
    scope = load_enforcement_policy(policy_file).enforced_connector_types
    ordered = sorted(verdicts, key=lambda v: (datetime.fromisoformat(v["issued_at"]), v["sequence"]))
    index = VerdictIndex()
    index.caught_up = True
    answers: dict[str, str] = {}
    applied = 0
    for record in sorted(records, key=lambda r: (datetime.fromisoformat(r["observed_at"]), r["event_id"])):
        at = datetime.fromisoformat(record["observed_at"])
        while applied < len(ordered) and datetime.fromisoformat(ordered[applied]["issued_at"]) < at:
            index.apply(compile_verdict(ordered[applied]))
            applied += 1
        connection = Connection(ip=record["client"]["ip"], helo=record["client"]["helo"])
        c = classify([tuple(h) for h in record["headers"]], connection, at, catalog=snapshot.catalog,
                     policy=snapshot.classification, products=snapshot.products)
        decision = message_decision(index, server_key(record["tenant_id"], c, connection), at.timestamp(),
                                    in_scope=record["connector"]["type"] in scope, status=c.status)
        answers[record["event_id"]] = {"accept": "accepted", "throttle": "deferred", "block": "rejected"}[
            decision.action]
    return answers


def whatif_answers(records_file: Path, commands_file: Path | None, policy_file: Path | None = None
                   ) -> tuple[dict[str, str], Any]:
    """event_id -> what ``patchgate whatif`` predicts for each message, and the prediction."""
    by_serial: dict[int, str] = {}
    answers: dict[str, str] = {}

    def answered(serial: int, key: str, answer: int | None) -> None:
        assert answer is not None, f"record {serial} refused"
        answers[by_serial[serial]] = ANSWERS[answer]

    async def run() -> Any:
        sim = Simulation(policy_file=policy_file, on_answer=answered)
        lines = list(numbered_lines(commands_file)) if commands_file else []
        return await sim.run(_noting_event_ids(file_records(records_file), by_serial),
                             parse_commands(lines, sim.settings.topic_commands, sim.prediction))

    prediction = asyncio.run(run())
    return answers, prediction


def _noting_event_ids(items: Iterable[Any], by_serial: dict[int, str]) -> Iterator[Any]:
    """The items, each record's event id noted under its serial (the input's checked records count from 1)."""
    for item in items:
        if isinstance(item, Item):
            by_serial[len(by_serial) + 1] = item.record["event_id"]
        yield item
