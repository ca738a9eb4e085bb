"""The shipped 120-day traffic sample (used by ``make demo`` and the processor's scenario tests).

Day 0 is 2026-10-05. Three tenants, one server per Exchange line, an Exim and a Domino server, plus the
cases an operator meets:

=============================  ===========  ==========================================================
server (tenant)                connector    what happens
=============================  ===========  ==========================================================
ex2019.contoso.com (contoso)   OnPremises   Exchange 2019 CU15, out of support: walks every stage
se.contoso.com (contoso)       OnPremises   Exchange SE, newest SU: current, never enforced
patcher.contoso.com (contoso)  OnPremises   SE one SU behind; patched on day 45, regresses on day 70
ex2016.fabrikam.com            OnPremises   Exchange 2016 CU23: out of support
ex2013.fabrikam.com            OnPremises   Exchange 2013 CU23: out of support
hidden.fabrikam.com            OnPremises   Exchange with its version stripped: reported, not enforced
relay.fabrikam.com             OnPremises   a Postfix relay in front of Exchange 2010: not Exchange
ex2010.tailspin.com            OnPremises   Exchange 2010 SP3: out of support
ex2007.tailspin.com            OnPremises   Exchange 2007 SP3: out of support
partner.tailspin.com           Partner      Exchange 2019 over a partner connector: reported only
exim.tailspin.com              OnPremises   Exim 4.89, behind: report only by default policy
domino.tailspin.com            OnPremises   Domino 9.0.1FP10, out of support: walks every stage
=============================  ===========  ==========================================================

contoso pauses enforcement for 20 days on day 35 and 30 days on day 75, and is refused a further 60
on day 80 (quota 90 per year). Every server mails on days 0, 10, 20, 33, 47, 63, 85, 100 and 115
at 13:00 UTC (patcher.contoso.com also on days 45 and 70); the clock steps to 00:00 of every day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

from processors.events.metadata import MetadataRecord
from processors.events.metadata import metadata_record as build_metadata_record
from processors.events.times import rfc3339

DAY0 = datetime(2026, 10, 5, tzinfo=UTC)
DAYS = 120
MAIL_DAYS = (0, 10, 20, 33, 47, 63, 85, 100, 115)
TLS = "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384)"


@dataclass(frozen=True, slots=True)
class SampleServer:
    tenant: str
    name: str
    ip: str
    build: str | None  # None: no build visible; the version stamped for exim and domino
    kind: str = "exchange"  # exchange | hidden | relay | exim | domino
    connector: str = "OnPremises"

    @property
    def server_key(self) -> str:
        return f"{self.tenant}/{self.name}"


SERVERS = (
    SampleServer("contoso", "ex2019.contoso.com", "198.51.100.10", "15.2.1748.53"),
    SampleServer("contoso", "se.contoso.com", "198.51.100.11", "15.2.2562.53"),
    SampleServer("contoso", "patcher.contoso.com", "198.51.100.12", "15.2.2562.29"),
    SampleServer("fabrikam", "ex2016.fabrikam.com", "203.0.113.20", "15.1.2507.39"),
    SampleServer("fabrikam", "ex2013.fabrikam.com", "203.0.113.21", "15.0.1497.48"),
    SampleServer("fabrikam", "hidden.fabrikam.com", "203.0.113.22", None, kind="hidden"),
    SampleServer("fabrikam", "relay.fabrikam.com", "203.0.113.23", "14.3.513.0", kind="relay"),
    SampleServer("tailspin", "ex2010.tailspin.com", "192.0.2.30", "14.3.513.0"),
    SampleServer("tailspin", "ex2007.tailspin.com", "192.0.2.31", "8.3.517.0"),
    SampleServer("tailspin", "partner.tailspin.com", "192.0.2.32", "15.2.1748.53", connector="Partner"),
    SampleServer("tailspin", "exim.tailspin.com", "192.0.2.33", "4.89", kind="exim"),
    SampleServer("tailspin", "domino.tailspin.com", "192.0.2.34", "9.0.1FP10 HF383", kind="domino"),
)
PATCHED_BUILD = "15.2.2562.53"
PATCH_DAY, REGRESS_DAY = 45, 70
PAUSES = ((35, 20), (75, 30), (80, 60))  # (day, days): at 12:30 UTC


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return DAY0 + timedelta(days=day, hours=hour, minutes=minute)


def other_product_hop(server: SampleServer, version: str | None, stamp: str) -> str:
    """The topmost hop an Exim or a Domino server writes, as those products stamp it."""
    if server.kind == "exim":
        return (f"from app01.{server.tenant}.local ([10.3.0.5]) by {server.name} with esmtps (TLS1.2) "
                f"tls TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 (Exim {version}) (envelope-from "
                f"<alerts@{server.tenant}.example>) id 1tQx2L-0004Zk-7c; {stamp}")
    return (f"from app02.{server.tenant}.local ([10.3.0.6]) by {server.name} (IBM Domino Release {version}) "
            f"with ESMTP id 2026100513000012-345678 ; {stamp}")


def received_headers(server: SampleServer, build: str | None, when: datetime) -> list[list[str]]:
    stamp = format_datetime(when - timedelta(seconds=2))
    if server.kind in ("exim", "domino"):
        return [["Received", other_product_hop(server, build, stamp)]]
    inner = f"from MBX01.{server.tenant}.local (10.1.0.5) by MBX01.{server.tenant}.local (10.1.0.5) with mapi id"
    if server.kind == "relay":
        hops = [
            f"from ex01.{server.tenant}.local (ex01.{server.tenant}.local [10.1.0.7]) by {server.name} (Postfix) "
            f"with ESMTPS id 4Xq9Lb2RzTz9sWp; {stamp}",
            f"from MBX01.{server.tenant}.local (10.1.0.5) by ex01.{server.tenant}.local (10.1.0.7) with Microsoft "
            f"SMTP Server (TLS) id {build}; {stamp}",
        ]
    elif server.kind == "hidden":
        hops = [f"from MBX01.{server.tenant}.local (10.1.0.5) by {server.name} (10.1.0.6) with Microsoft SMTP "
                f"Server; {stamp}"]
    else:
        assert build is not None
        major, minor, number, revision = (int(part) for part in build.split("."))
        hops = [
            f"from MBX01.{server.tenant}.local (10.1.0.5) by {server.name} (10.1.0.6) with Microsoft SMTP Server "
            f"{TLS} id {build}; {stamp}",
            f"{inner} {major}.{minor:02d}.{number:04d}.{revision:03d}; {stamp}",
        ]
    return [["Received", hop] for hop in hops] + [["X-MS-Exchange-Organization-AuthAs", "Internal"]]


def metadata_record(server: SampleServer, build: str | None, when: datetime, serial: int) -> MetadataRecord:
    return build_metadata_record(
        event_id=f"mx1.example.net:{server.name}:{serial}", observed_at=rfc3339(when) or "",
        edge="mx1.example.net", tenant_id=server.tenant, connector_id=f"{server.tenant}-{server.connector.lower()}",
        connector_type=server.connector, client_ip=server.ip, helo=server.name,
        message_id=f"<{serial}.{server.name}@{server.tenant}.example>", size=4096 + serial, recipients=1,
        headers=received_headers(server, build, when),
    )


def build_on(server: SampleServer, day: int) -> str | None:
    if server.name == "patcher.contoso.com" and PATCH_DAY <= day < REGRESS_DAY:
        return PATCHED_BUILD
    return server.build


def mail_days(server: SampleServer) -> tuple[int, ...]:
    if server.name == "patcher.contoso.com":
        return tuple(sorted({*MAIL_DAYS, PATCH_DAY, REGRESS_DAY}))
    return MAIL_DAYS


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the replay, in time order: move the clock, send mail, or send a command."""

    kind: str  # clock | mail | pause
    at: datetime
    records: tuple[tuple[str, MetadataRecord], ...] = ()  # (server key, metadata record)
    tenant: str | None = None
    days: int | None = None


def steps(days: int = DAYS) -> list[Step]:
    result: list[Step] = []
    serial = 0
    for day in range(days + 1):
        result.append(Step("clock", at(day)))
        for pause_day, pause_days in PAUSES:
            if pause_day == day:
                result.append(Step("pause", at(day, 12, 30), tenant="contoso", days=pause_days))
        mail = []
        for server in SERVERS:
            if day in mail_days(server):
                serial += 1
                mail.append((server.server_key, metadata_record(server, build_on(server, day), at(day, 13), serial)))
        if mail:
            result.append(Step("mail", at(day, 13), records=tuple(mail)))
    return result
