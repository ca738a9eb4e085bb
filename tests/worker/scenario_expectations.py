"""The expected verdicts and notifications of the shipped 120-day sample (processors/replay/sample.py),
written out from the enforcement rules by hand: stage N starts at 00:00 UTC of detection day + 0, 30, 40,
50, 60, 70, 80, 90; notices 7 days before the first throttling (stage 2) and blocking (stage 5) stage;
a pause sets paused_until without stopping the clock; mail arrives at 13:00, pauses at 12:30. The
Domino server (9.0.1FP10, past its end of support, enforced by default) walks like the Exchange ones;
the Exim server (4.89, behind, report only by default) and the partner-connector server get none."""

from __future__ import annotations

from processors.replay.sample import at

P1 = at(55, 12, 30)  # end of the 20-day pause of day 35
P2 = at(105, 12, 30)  # end of the 30-day pause of day 75
STAGE_STARTS = ((2, 30), (3, 40), (4, 50), (5, 60), (6, 70), (7, 80), (8, 90))


def plain_walk() -> list[tuple[str, int, str | None]]:
    rows: list[tuple[str, int, str | None]] = [(iso(at(0, 13)), 1, None)]
    rows += [(iso(at(day)), stage, None) for stage, day in STAGE_STARTS]
    return rows


def iso(moment: object) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # type: ignore[attr-defined, no-any-return]


# (issued_at, stage, paused_until) per server, in sequence order
VERDICTS: dict[str, list[tuple[str, int, str | None]]] = {
    "contoso/ex2019.contoso.com": [
        (iso(at(0, 13)), 1, None), (iso(at(30)), 2, None), (iso(at(35, 12, 30)), 2, iso(P1)),
        (iso(at(40)), 3, iso(P1)), (iso(at(50)), 4, iso(P1)), (iso(P1), 4, None), (iso(at(60)), 5, None),
        (iso(at(70)), 6, None), (iso(at(75, 12, 30)), 6, iso(P2)), (iso(at(80)), 7, iso(P2)),
        (iso(at(90)), 8, iso(P2)), (iso(P2), 8, None),
    ],
    "contoso/patcher.contoso.com": [
        (iso(at(0, 13)), 1, None), (iso(at(30)), 2, None), (iso(at(35, 12, 30)), 2, iso(P1)),
        (iso(at(40)), 3, iso(P1)), (iso(at(45, 13)), 0, None), (iso(at(70, 13)), 1, None),
        (iso(at(75, 12, 30)), 1, iso(P2)), (iso(at(100)), 2, iso(P2)), (iso(P2), 2, None),
        (iso(at(110)), 3, None), (iso(at(120)), 4, None),
    ],
    "fabrikam/ex2016.fabrikam.com": plain_walk(),
    "fabrikam/ex2013.fabrikam.com": plain_walk(),
    "tailspin/ex2010.tailspin.com": plain_walk(),
    "tailspin/ex2007.tailspin.com": plain_walk(),
    "tailspin/domino.tailspin.com": plain_walk(),
}

PLAIN_NOTICES: list[tuple[str, str, int | None]] = [
    (iso(at(0, 13)), "detected", 1), (iso(at(23)), "stage_upcoming", 2), (iso(at(30)), "stage_started", 2),
    (iso(at(40)), "stage_started", 3), (iso(at(50)), "stage_started", 4), (iso(at(53)), "stage_upcoming", 5),
    (iso(at(60)), "stage_started", 5), (iso(at(70)), "stage_started", 6), (iso(at(80)), "stage_started", 7),
    (iso(at(90)), "stage_started", 8),
]

# (at, kind, stage) per server; tenant-wide notifications under the tenant id
NOTIFICATIONS: dict[str, list[tuple[str, str, int | None]]] = {
    "contoso/ex2019.contoso.com": PLAIN_NOTICES,
    "contoso/patcher.contoso.com": [
        (iso(at(0, 13)), "detected", 1), (iso(at(23)), "stage_upcoming", 2), (iso(at(30)), "stage_started", 2),
        (iso(at(40)), "stage_started", 3), (iso(at(45, 13)), "remediated", 0), (iso(at(70, 13)), "detected", 1),
        (iso(at(93)), "stage_upcoming", 2), (iso(at(100)), "stage_started", 2), (iso(at(110)), "stage_started", 3),
        (iso(at(120)), "stage_started", 4),
    ],
    "fabrikam/ex2016.fabrikam.com": PLAIN_NOTICES,
    "fabrikam/ex2013.fabrikam.com": PLAIN_NOTICES,
    "tailspin/ex2010.tailspin.com": PLAIN_NOTICES,
    "tailspin/ex2007.tailspin.com": PLAIN_NOTICES,
    "tailspin/domino.tailspin.com": PLAIN_NOTICES,
    "contoso": [
        (iso(at(35, 12, 30)), "pause_started", None), (iso(P1), "pause_ended", None),
        (iso(at(75, 12, 30)), "pause_started", None), (iso(at(80, 12, 30)), "pause_refused", None),
        (iso(P2), "pause_ended", None),
    ],
}
