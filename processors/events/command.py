"""``patchgate.command/1``: an operator's pause command (create, extend, end) for one tenant.

:func:`pause_command` builds one (the API, the ``patchgate pause`` command line and the replay use
it); :func:`parse_command` reads one off the commands topic, where the Kafka key is the tenant id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NotRequired, TypedDict

from processors.contracts import COMMAND_SCHEMA, ContractError, contracts
from processors.errors import PatchgateError
from processors.events.times import rfc3339
from processors.events.wire import decode_checked

ACTIONS_WITH_DAYS = frozenset({"pause_create", "pause_extend"})


class Command(TypedDict):
    schema: str
    command_id: str
    tenant_id: str
    issued_at: str
    actor: str
    action: str  # pause_create | pause_extend | pause_end
    days: NotRequired[int]


class CommandKeyMismatch(PatchgateError, ValueError):
    """A command whose tenant_id is not its Kafka key (the commands topic is keyed by tenant id)."""


def pause_command(*, tenant_id: str, action: str, actor: str, issued_at: datetime, days: int | None = None,
                  command_id: str | None = None) -> Command:
    """A validated command; raises ``ContractError`` (e.g. a bad tenant id or number of days)."""
    command: Command = {
        "schema": COMMAND_SCHEMA,
        "command_id": command_id or f"cmd-{uuid.uuid4().hex}",
        "tenant_id": tenant_id,
        "issued_at": rfc3339(issued_at) or "",
        "actor": actor,
        "action": action,
    }
    if action in ACTIONS_WITH_DAYS:
        command["days"] = days  # type: ignore[typeddict-item]  # the contract checks it is a number
    contracts.command(command)
    return command


def command_key(command: Command) -> bytes:
    """The Kafka key a command is published under: its tenant id."""
    return command["tenant_id"].encode()


def parse_command(value: bytes | None, key: bytes | None) -> Command:
    """The command in a Kafka message, checked against its contract and its key.

    Raises ``orjson.JSONDecodeError``, ``ContractError`` or :class:`CommandKeyMismatch`."""
    command = decode_checked(value or b"", contracts.command)
    if command["action"] in ACTIONS_WITH_DAYS and "days" not in command:
        raise ContractError("missing required property 'days' for this action")
    key_text = None if key is None else key.decode("utf-8", "backslashreplace")
    if key_text != command["tenant_id"]:
        raise CommandKeyMismatch(
            f"tenant mismatch: the command's tenant_id {command['tenant_id']!r} disagrees with its Kafka key "
            f"{key_text!r} (the commands topic is keyed by tenant id); not applied")
    return command  # type: ignore[no-any-return]
