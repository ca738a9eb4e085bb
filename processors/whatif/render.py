"""A prediction as JSON (the ``schemas/whatif.v1.json`` contract), CSV, a terminal table or one
self-contained HTML page (the report page's style, a strict CSP, no script: the charts are SVG)."""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import io
from collections.abc import Sequence
from datetime import datetime
from importlib import resources
from typing import Any

import orjson

from processors.events.times import rfc3339
from processors.whatif.model import ANSWERS, Prediction, ServerResult

WHATIF_SCHEMA = "patchgate.whatif/1"


def _time(at: datetime | None) -> str | None:
    return rfc3339(at)


def server_json(result: ServerResult) -> dict[str, Any]:
    accepted, deferred, rejected = result.totals()
    return {
        "tenant_id": result.tenant_id,
        "server": result.server,
        "products": [{"product": product or None, "version": version} for product, version in result.products],
        "first_detected": _time(result.first_detected),
        "stages": [{"at": _time(s.at), "stage": s.stage, "throttle_minutes": s.throttle_minutes,
                    "block_minutes": s.block_minutes} for s in result.stages],
        "pauses": [{"from": _time(p.start), "until": _time(p.until)} for p in result.pauses],
        "messages": {"accepted": accepted, "deferred": deferred, "rejected": rejected},
        "days": [{"day": day, "accepted": counts[0], "deferred": counts[1], "rejected": counts[2]}
                 for day, counts in sorted(result.days.items())],
        "shadow": result.shadow,
    }


def prediction_json(prediction: Prediction) -> dict[str, Any]:
    totals = [0, 0, 0]
    servers = []
    for result in prediction.sorted_servers():
        document = server_json(result)
        for index, name in enumerate(ANSWERS):
            totals[index] += document["messages"][name]
        servers.append(document)
    return {
        "schema": WHATIF_SCHEMA,
        "enforce_from": _time(prediction.enforce_from),
        "input": {
            "records": prediction.records, "first_at": _time(prediction.first_at),
            "last_at": _time(prediction.last_at), "before_enforce_from": prediction.before_enforce_from,
            "commands": prediction.commands, "skipped": prediction.skipped,
        },
        "messages": dict(zip(ANSWERS, totals, strict=True)),
        "skipped": {"by_reason": dict(sorted(prediction.skipped_by_reason.items())),
                    "first": [{"where": s.where, "reason": s.reason} for s in prediction.skips]},
        "servers": servers,
    }


def to_json(prediction: Prediction) -> bytes:
    return orjson.dumps(prediction_json(prediction), option=orjson.OPT_INDENT_2) + b"\n"


# -------------------------------------------------------------------------------------------- CSV

CSV_COLUMNS = ("tenant_id", "server", "day", "accepted", "deferred", "rejected", "stage", "throttle_minutes",
               "block_minutes", "paused", "first_detected", "products")


def _safe_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas: server names come from mail headers, i.e. from outside."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _stage_on(result: ServerResult, day_end: str) -> tuple[int, int, int]:
    """The stage and minutes in force at the end of a day (``YYYY-MM-DD`` + 'T24')."""
    current = (0, 0, 0)
    for change in result.stages:
        if change.at.strftime("%Y-%m-%d") <= day_end:
            current = (change.stage, change.throttle_minutes, change.block_minutes)
    return current


def _paused_on(result: ServerResult, day: str) -> bool:
    return any(p.start.strftime("%Y-%m-%d") <= day <= p.until.strftime("%Y-%m-%d") for p in result.pauses)


def to_csv(prediction: Prediction) -> str:
    """One row per server and day with mail: the three counts and the stage in force that day."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for result in prediction.sorted_servers():
        products = " ".join(f"{p}:{v}" if p else v for p, v in result.products)
        for day, counts in sorted(result.days.items()):
            stage, throttle, block = _stage_on(result, day)
            writer.writerow([_safe_cell(v) for v in (
                result.tenant_id, result.server, day, *counts, stage, throttle, block,
                "yes" if _paused_on(result, day) else "", _time(result.first_detected) or "", products)])
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------ table

def _printable(value: str) -> str:
    # header-derived text must not move the terminal cursor or change colours
    return "".join(c if c.isprintable() else "?" for c in value)


def _stage_text(result: ServerResult) -> str:
    enforcing = [s for s in result.stages if s.throttle_minutes or s.block_minutes]
    parts = []
    first_throttle = next((s for s in enforcing if s.throttle_minutes and not s.block_minutes), None)
    first_block = next((s for s in enforcing if s.block_minutes), None)
    if first_throttle:
        parts.append(f"450 from {first_throttle.at:%Y-%m-%d}")
    if first_block:
        parts.append(f"550 from {first_block.at:%Y-%m-%d}")
    return ", ".join(parts)


def _align(headers: Sequence[str], lines: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    return out


def to_table(prediction: Prediction) -> str:
    headers = ("TENANT", "SERVER", "PRODUCT", "DETECTED", "LAST STAGE", "ENFORCED", "ACCEPTED", "DEFERRED",
               "REJECTED", "PAUSES")
    lines = []
    for result in prediction.sorted_servers():
        totals = result.totals()
        last = result.stages[-1] if result.stages else None
        lines.append([
            _printable(result.tenant_id), _printable(result.server),
            _printable(", ".join(f"{p} {v}".strip() for p, v in result.products)[:40]),
            f"{result.first_detected:%Y-%m-%d}" if result.first_detected else "",
            f"{last.stage} ({last.throttle_minutes}/{last.block_minutes} min/h)" if last else "",
            _stage_text(result), *map(str, totals), str(len(result.pauses)) if result.pauses else "",
        ])
    out = _align(headers, lines)
    out.append("")
    out.append(summary_line(prediction))
    shadowed = sorted({r.tenant_id for r in prediction.servers.values() if r.shadow})
    if shadowed:
        out.append(f"shadow mode ({', '.join(map(_printable, shadowed))}): their edges accept and count the replies "
                   "counted here as deferred or rejected")
    out += [f"skipped {s.where}: {s.reason}" for s in prediction.skips]
    if prediction.skipped > len(prediction.skips):
        out.append(f"... and {prediction.skipped - len(prediction.skips)} more skipped "
                   f"({', '.join(f'{k}: {v}' for k, v in sorted(prediction.skipped_by_reason.items()))})")
    return "\n".join(out) + "\n"


def summary_line(prediction: Prediction) -> str:
    totals = [0, 0, 0]
    for result in prediction.servers.values():
        for index, count in enumerate(result.totals()):
            totals[index] += count
    span = (f" from {prediction.first_at:%Y-%m-%d %H:%M} to {prediction.last_at:%Y-%m-%d %H:%M} UTC"
            if prediction.first_at and prediction.last_at else "")
    before = f", {prediction.before_enforce_from} before --enforce-from" if prediction.before_enforce_from else ""
    return (f"{prediction.records} messages{span} from {len(prediction.servers)} servers: {totals[0]} accepted, "
            f"{totals[1]} deferred (450 4.7.230), {totals[2]} rejected (550 5.7.230); "
            f"{prediction.skipped} records skipped{before}.")


# ------------------------------------------------------------------------------------------- HTML

PAGE_CSS = """
table { border-collapse: collapse; width: 100%; background: var(--card); }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); font-size: .85rem; }
.legend span { display: inline-block; margin-right: 1rem; }
.swatch { display: inline-block; width: .8rem; height: .8rem; vertical-align: middle; margin-right: .3rem; }
.accept { fill: var(--accept); background: var(--accept); }
.throttle { fill: var(--throttle); background: var(--throttle); }
.block { fill: var(--block); background: var(--block); }
"""


def _style() -> str:
    base = resources.files("processors.api.static").joinpath("report.css").read_text("utf-8")
    return base + PAGE_CSS


def _chart(days: list[tuple[str, list[int]]]) -> str:
    """Stacked bars per day (accepted, deferred, rejected) as inline SVG."""
    if not days:
        return "<p>No messages.</p>"
    width, height, bar = 900, 180, max(1.0, 900 / len(days))
    peak = max(sum(c) for _, c in days) or 1
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height + 20}" role="img" '
             f'aria-label="messages per day: accepted, deferred, rejected">']
    for index, (day, counts) in enumerate(days):
        y = float(height)
        for count, cls in zip(counts, ("accept", "throttle", "block"), strict=True):
            if count:
                h = height * count / peak
                y -= h
                parts.append(f'<rect class="{cls}" x="{index * bar:.2f}" y="{y:.2f}" width="{max(bar - 1, 1):.2f}" '
                             f'height="{h:.2f}"><title>{html.escape(day)}: {count} {cls}</title></rect>')
    first, last = html.escape(days[0][0]), html.escape(days[-1][0])
    parts.append(f'<text x="0" y="{height + 15}" font-size="11">{first}</text>')
    parts.append(f'<text x="{width}" y="{height + 15}" font-size="11" text-anchor="end">{last}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _tenant_section(tenant: str, results: list[ServerResult]) -> str:
    per_day: dict[str, list[int]] = {}
    for result in results:
        for day, counts in result.days.items():
            sums = per_day.setdefault(day, [0, 0, 0])
            for index in range(3):
                sums[index] += counts[index]
    rows = []
    for result in results:
        totals = result.totals()
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
            result.server, ", ".join(f"{p} {v}".strip() for p, v in result.products),
            f"{result.first_detected:%Y-%m-%d}" if result.first_detected else "", _stage_text(result), *totals,
        )) + "</tr>")
    return (f"<h2>{html.escape(tenant)}</h2><figure><figcaption>Messages per day</figcaption>"
            f"{_chart(sorted(per_day.items()))}</figure>"
            "<table><thead><tr><th>server</th><th>product</th><th>detected</th><th>enforced</th><th>accepted</th>"
            f"<th>deferred</th><th>rejected</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def to_html(prediction: Prediction) -> str:
    style = _style()
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    csp = (f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; form-action 'none'; "
           "base-uri 'none'")
    tenants: dict[str, list[ServerResult]] = {}
    for result in prediction.sorted_servers():
        tenants.setdefault(result.tenant_id, []).append(result)
    legend = ('<p class="legend"><span><i class="swatch accept"></i>accepted</span>'
              '<span><i class="swatch throttle"></i>deferred (450 4.7.230)</span>'
              '<span><i class="swatch block"></i>rejected (550 5.7.230)</span></p>')
    body = "".join(_tenant_section(tenant, results) for tenant, results in tenants.items())
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer"><title>patchgate whatif</title>'
            f"<style>{style}</style></head><body><header><h1><span class=\"brand\">patchgate</span> whatif</h1>"
            f"</header><main><p>{html.escape(summary_line(prediction))}</p>{legend}{body}</main></body></html>\n")
