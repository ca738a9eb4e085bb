"""Report rows as an aligned text table (optionally coloured), CSV or JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from processors.enforcement.verdicts import rfc3339
from processors.report.model import PauseSummary, ServerRow

# CSV columns: the Get-OnPremServerReportInfo fields first, then patchgate's own.
CSV_COLUMNS = (
    "ServerFQDN", "Build", "ExchangeServer", "FirstDetectedDate", "RecommendedBuildVersions",
    "ThrottleEnabledDate", "BlockingEnabledDate", "NextStageThrottleRate", "NextStageBlockRate",
    "NextStageStartDate", "status", "rule", "stage", "throttle_minutes", "block_minutes", "paused_until",
    "reply_now", "last_seen", "client_ips", "messages_today", "messages_30d", "product", "version", "shadow",
)

_COLOURS = {0: "\033[32m", 1: "\033[36m", 2: "\033[33m", 3: "\033[33m", 4: "\033[33m"}
_RED = "\033[31m"
_RESET = "\033[0m"


def _date(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d") if at else ""


def recommended_text(row: ServerRow) -> str:
    return "; ".join(f"{r['short']} ({r['long']})" for r in row.RecommendedBuildVersions)


def csv_record(row: ServerRow) -> dict[str, Any]:
    return {
        "ServerFQDN": row.ServerFQDN,
        "Build": row.Build or "",
        "ExchangeServer": row.ExchangeServer or "",
        "FirstDetectedDate": rfc3339(row.FirstDetectedDate) or "",
        "RecommendedBuildVersions": recommended_text(row),
        "ThrottleEnabledDate": rfc3339(row.ThrottleEnabledDate) or "",
        "BlockingEnabledDate": rfc3339(row.BlockingEnabledDate) or "",
        "NextStageThrottleRate": "" if row.NextStageThrottleRate is None else row.NextStageThrottleRate,
        "NextStageBlockRate": "" if row.NextStageBlockRate is None else row.NextStageBlockRate,
        "NextStageStartDate": rfc3339(row.NextStageStartDate) or "",
        "status": row.status,
        "rule": row.rule or "",
        "stage": row.stage,
        "throttle_minutes": row.throttle_minutes,
        "block_minutes": row.block_minutes,
        "paused_until": rfc3339(row.paused_until) or "",
        "reply_now": row.reply_now.reply,
        "last_seen": rfc3339(row.last_seen) or "",
        "client_ips": " ".join(row.client_ips),
        "messages_today": row.messages_per_day[-1][1] if row.messages_per_day else 0,
        "messages_30d": sum(count for _, count in row.messages_per_day),
        "product": row.product or "",
        "version": row.version or "",
        "shadow": "true" if row.shadow else "",
    }


def _safe_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas: server names come from mail headers, i.e. from outside."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(rows: Sequence[ServerRow]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _safe_cell(v) for k, v in csv_record(row).items()})
    return buffer.getvalue()


def to_json(tenant: str, rows: Sequence[ServerRow], pause: PauseSummary | None, now: datetime) -> bytes:
    document: dict[str, Any] = {"tenant_id": tenant, "generated_at": rfc3339(now),
                                "servers": [row.to_json() for row in rows]}
    if pause is not None:
        document["pause"] = pause.to_json()
    return orjson.dumps(document, option=orjson.OPT_INDENT_2)


def _printable(value: str) -> str:
    # header-derived text must not move the terminal cursor or change colours
    return "".join(c if c.isprintable() else "?" for c in value)


def to_table(rows: Sequence[ServerRow], colour: bool = False) -> str:
    headers = ("SERVER", "PRODUCT", "BUILD", "STATUS", "STAGE", "DETECTED", "THROTTLE FROM", "BLOCK FROM",
               "NEXT STAGE", "NEXT RATE t/b", "REPLY NOW", "LAST SEEN", "MSG/DAY", "RECOMMENDED")
    lines: list[list[str]] = []
    for row in rows:
        next_rate = ("" if row.NextStageThrottleRate is None
                     else f"{row.NextStageThrottleRate}/{row.NextStageBlockRate}")
        reply = row.reply_now.reply[:11] if row.reply_now.action != "accept" else "250"
        if row.reply_now.reason == "paused":
            reply = "250 (paused)"
        elif row.reply_now.withheld:
            reply = f"250 (shadow {row.reply_now.withheld[:3]})"
        lines.append([
            _printable(row.ServerFQDN), _printable(row.ExchangeServer or ""),
            _printable(row.Build or row.version or ""),
            row.status, str(row.stage), _date(row.FirstDetectedDate), _date(row.ThrottleEnabledDate),
            _date(row.BlockingEnabledDate),
            f"{row.NextStage} on {_date(row.NextStageStartDate)}" if row.NextStage else "",
            next_rate, reply, row.last_seen.strftime("%Y-%m-%d %H:%M") if row.last_seen else "",
            str(row.messages_per_day[-1][1] if row.messages_per_day else 0),
            _printable(", ".join(r["short"] for r in row.RecommendedBuildVersions)),
        ])
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row, line in zip(rows, lines, strict=True):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        if colour:
            code = _RED if row.block_minutes or row.stage >= 5 else _COLOURS.get(min(row.stage, 4), "")
            cells[4] = f"{code}{cells[4]}{_RESET}"
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def pause_line(pause: PauseSummary) -> str:
    state = f"paused until {pause.paused_until:%Y-%m-%d %H:%M} UTC" if pause.active and pause.paused_until \
        else "not paused"
    return (f"Enforcement {state}; {pause.days_left_this_year} of {pause.days_per_year} pause days left "
            f"in {pause.year}.")
