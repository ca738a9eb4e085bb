"""``patchgate topics plan|create|check``: patchgate's topics compared with what the brokers hold.

- ``plan``: what ``create`` would create, and how existing topics differ from what patchgate creates
  (contradictions marked); exit 0.
- ``create``: create the missing topics, then show the plan; exit 1 if a contradiction remains.
- ``check``: one line per contradiction, exit 1 if there is one (what a worker refuses to start on).

In the per-tenant topic mode each covers both topics of every tenant whose metadata topic the brokers
hold (``<TOPIC_METADATA>.<tenant>``, ``<TOPIC_VERDICTS>.<tenant>``; ``create`` makes the missing
verdicts topics of those tenants), and of every ``--tenant`` named (``create --tenant contoso`` makes
a new tenant's two topics).

``--format json`` prints one JSON document instead. Exit 2: a configuration or broker error, one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from processors.settings import Settings, component_settings

if TYPE_CHECKING:
    from processors.kafka.topics import TopicPlan

PROGRAM = "patchgate topics"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topics = subparsers.add_parser("topics", help="plan, create and check patchgate's Kafka topics")
    actions = topics.add_subparsers(dest="topics_action", metavar="ACTION", required=True)
    for name, help_text in (("plan", "what create would create, and what differs from the existing topics"),
                            ("create", "create the missing topics"),
                            ("check", "exit 1 when an existing topic contradicts what patchgate needs")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("--format", choices=["text", "json"], default="text")
        action.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the brokers")
        action.add_argument("--tenant", action="append", default=[], metavar="TENANT_ID",
                            help="per-tenant topic mode: also this tenant's metadata and verdicts topics "
                                 "(repeatable)")
        action.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from processors.kafka.clients import KafkaUnreachable, check_connection
    from processors.kafka.config import KafkaConfigError
    from processors.kafka.oidc import OidcTokenError
    from processors.kafka.topics import TopicsNotCreated

    settings = component_settings(Settings, PROGRAM)
    if args.tenant and not settings.per_tenant_topics:
        print(f"{PROGRAM} {args.topics_action}: --tenant needs the per-tenant topic mode "
              "(PATCHGATE_METADATA_TOPIC_MODE=per-tenant)", file=sys.stderr)
        return 2
    try:
        check_connection(settings.kafka, args.timeout)
        return _act(settings, args.topics_action, args.format, args.timeout, args.tenant)
    except (KafkaConfigError, KafkaUnreachable, OidcTokenError, TopicsNotCreated, ValueError) as error:
        print(f"{PROGRAM} {args.topics_action}: {error}", file=sys.stderr)
        return 2
    except KafkaException as error:
        print(f"{PROGRAM} {args.topics_action}: Kafka error: {error.args[0] if error.args else error}",
              file=sys.stderr)
        return 2


def _act(settings: Settings, action: str, output: str, timeout: float, tenants: Sequence[str] = ()) -> int:
    from processors.kafka.topics import group_members, note_idle_members, plan

    created = _create(settings, timeout, tenants) if action == "create" else []
    topics = plan(settings, timeout, tenants)
    if not settings.per_tenant_topics:
        note_idle_members(topics, settings.consumer_group, group_members(settings, min(timeout, 5.0)))
    contradictions = [line for topic in topics for line in topic.contradictions]
    if output == "json":
        print(orjson.dumps({"action": action, "created": created, "topics": [t.as_json() for t in topics],
                            "contradictions": contradictions}, option=orjson.OPT_INDENT_2).decode())
    elif action == "check":
        print(check_text(topics))
    else:
        print(plan_text(topics, created))
    return 1 if contradictions and action != "plan" else 0


def _create(settings: Settings, timeout: float, tenants: Sequence[str]) -> list[str]:
    """The shared topics, and in the per-tenant mode both topics of every known and every named tenant."""
    from processors.kafka.topics import ensure_tenant_topics, ensure_topics, known_tenants

    created = ensure_topics(settings, timeout)
    if settings.per_tenant_topics:
        created += ensure_tenant_topics(settings, sorted({*known_tenants(settings, timeout), *tenants}), timeout)
    return created


def plan_text(topics: Sequence[TopicPlan], created: Sequence[str] = ()) -> str:
    """One block per topic: its action, then its contradictions and what differs."""
    lines = []
    for topic in topics:
        spec = topic.spec
        action = "created" if spec.name in created else topic.action
        lines.append(f"{spec.name} ({spec.role}): {action}")
        if topic.existing is None or spec.name in created:
            settings = " ".join(f"{key}={value}" for key, value in sorted(spec.config.items()))
            lines.append(f"  partitions={spec.partitions} replication_factor={spec.replication_factor} {settings}")
        lines += [f"  CONTRADICTION {line}" for line in topic.contradictions]
        lines += [f"  differs: {line}" for line in topic.differences]
    return "\n".join(lines)


def check_text(plans: Sequence[TopicPlan]) -> str:
    """One line per contradiction, or a summary line when there is none."""
    contradictions = [line for topic in plans for line in topic.contradictions]
    if contradictions:
        return "\n".join(contradictions)
    missing = [topic.spec.name for topic in plans if topic.existing is None]
    summary = f"no contradiction in {len(plans) - len(missing)} existing topics"
    if missing:
        summary += f"; missing (a worker or `patchgate topics create` creates them): {', '.join(missing)}"
    return summary
