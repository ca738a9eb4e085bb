"""One contract, two stores: every test here runs on the in-memory store and on the Redis store
(real redis-server), through the operations of :class:`processors.state.protocol.Store` only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from processors.enforcement.pauses import PauseOutcome, PauseState
from processors.state.keys import DUE_SERVER, DUE_TENANT, STATE_FIELDS, due_member
from processors.state.model import CommandState, Commit, LeaseState, Observation, outbox_record
from processors.state.protocol import Store
from tests.state.contract import StoreFactory, on_store

SERVER = "contoso/ex01.contoso.com"
T0 = 1_793_000_000.0  # 2026-10-26 (epoch seconds)
DAY = "2026-10-26"


def observation(first: float = T0, last: float = T0 + 60, evidence: list[dict[str, Any]] | None = None,
                ids: list[str] | None = None, ips: list[str] | None = None, server_key: str = SERVER,
                latest_status: str = "behind") -> Observation:
    tenant, _, server = server_key.partition("/")
    return Observation(
        server_key=server_key, tenant_id=tenant, server=server, first_at=first, last_at=last,
        evidence=evidence if evidence is not None else [evidence_item(first, 1, "15.2.1118.7")],
        latest={"at": last, "status": latest_status, "rule": "baseline", "connector_type": "OnPremises",
                "helo": "ex01"},
        ips=ips if ips is not None else ["192.0.2.7"], helos=["ex01"],
        event_ids_by_day={DAY: ids if ids is not None else ["e1", "e2"]},
    )


def evidence_item(at: float, vulnerable: int, build: str | None) -> dict[str, Any]:
    status = {1: "behind", 0: "current", -1: "unknown_build"}[vulnerable]
    return {"at": at, "vulnerable": vulnerable, "fields": {"status": status, "build": build, "rule": "baseline"}}


def commit(fingerprint: str, stage: int = 1, notifications: list[bytes] | None = None,
           server_key: str = SERVER) -> Commit:
    return Commit(server_key=server_key, fingerprint=fingerprint, verdict_prefix=b'{"sequence":',
                  verdict_suffix=f',"stage":{stage}}}'.encode(), stage=stage, issued_at=T0 + 120,
                  kafka_key=server_key, history=f'{{"fingerprint":"{fingerprint}"}}'.encode(),
                  action="throttle", notifications=notifications or [])


def notification(tenant: str, notification_id: str) -> bytes:
    return outbox_record("notes", tenant, f'{{"notification_id":"{notification_id}"}}'.encode())


# --------------------------------------------------------------------------------------------- observe

def test_observe_folds_a_batch_and_reports_what_the_evaluation_needs(new_store: StoreFactory) -> None:
    async def scenario(store: Store) -> Any:
        states, pauses = await store.observe([observation(ips=["192.0.2.9", "192.0.2.7"])], ["contoso"])
        return states, pauses, await store.tenants(), await store.tenant_servers("contoso")

    states, pauses, tenants, servers = on_store(new_store, scenario)
    fields, ips, outbox_length = states[0]
    assert set(fields) <= set(STATE_FIELDS)
    assert fields["tenant_id"] == "contoso" and fields["server"] == "ex01.contoso.com"
    assert (fields["status"], fields["build"], fields["detected_at"]) == ("behind", "15.2.1118.7", "1793000000")
    assert (ips, outbox_length) == (["192.0.2.7", "192.0.2.9"], 0)
    assert pauses == {"contoso": PauseState()}
    assert (tenants, servers) == (["contoso"], [SERVER])


def test_observe_is_idempotent_and_keeps_the_newest_evidence_by_event_time(new_store: StoreFactory) -> None:
    newer = observation(first=T0 + 3600, last=T0 + 3660, evidence=[evidence_item(T0 + 3600, 1, "15.2.1118.9")])
    older = observation(first=T0 - 3600, last=T0 - 3000, evidence=[evidence_item(T0 - 3600, 1, "15.2.1118.1")])

    async def scenario(store: Store) -> Any:
        await store.observe([newer], ["contoso"])
        once = (await store.server_states([SERVER]))[0]
        await store.observe([newer], ["contoso"])  # redelivery
        again = (await store.server_states([SERVER]))[0]
        await store.observe([older], ["contoso"])  # late, older evidence
        return once, again, (await store.server_states([SERVER]))[0][0]

    once, again, after_older = on_store(new_store, scenario)
    assert once == again
    assert after_older["build"] == "15.2.1118.9"  # the older evidence does not win
    assert after_older["first_seen"] == repr(T0 - 3600) and after_older["last_seen"] == repr(T0 + 3660)
    assert after_older["detected_at"] == "1792996400"  # the earliest vulnerable evidence, as Lua writes numbers


def test_current_evidence_clears_the_detection_and_numbers_are_written_like_lua(new_store: StoreFactory) -> None:
    fractional = T0 + 0.123456789
    evidence = [evidence_item(T0, 1, "15.2.1118.7"), evidence_item(fractional + 10, 0, None)]

    async def scenario(store: Store) -> dict[str, str]:
        await store.observe([observation(evidence=evidence, last=fractional + 10)], ["contoso"])
        return (await store.server_states([SERVER]))[0][0]

    fields = on_store(new_store, scenario)
    assert "detected_at" not in fields and "build" not in fields  # a null field is removed
    assert fields["status"] == "current"
    assert fields["current_at"] == fields["evidence_at"] == "1793000010.1235"  # 14 significant digits
    assert fields["last_status_at"] == "1793000010.1235"


def test_client_ips_are_capped_and_messages_per_day_ignore_repeats(new_store: StoreFactory) -> None:
    many = [f"192.0.2.{n}" for n in range(100)]

    async def scenario(store: Store) -> Any:
        await store.observe([observation(ips=many, ids=["e1", "e2", "e3"])], ["contoso"])
        await store.observe([observation(ids=["e2", "e3", "e4"])], ["contoso"])  # e2, e3 redelivered
        return await store.server_reports([SERVER, "contoso/gone.example"], [DAY, "2026-10-25"], chunk=1)

    (report,) = on_store(new_store, scenario)  # a listed server without state has no report
    assert len(report.ips) == 64 and report.helos == ["ex01"]
    assert report.counts == [(DAY, 4), ("2026-10-25", 0)]


# -------------------------------------------------------------------------------- verdicts and outbox

def test_commit_verdict_is_a_compare_and_set_on_the_fingerprint(new_store: StoreFactory) -> None:
    async def scenario(store: Store) -> Any:
        await store.observe([observation()], ["contoso"])
        first, _ = await store.commit([commit("f1", notifications=[notification("contoso", "n1")])], [], [],
                                      "verdicts")
        repeat, _ = await store.commit([commit("f1")], [], [], "verdicts")
        second, claimed = await store.commit([commit("f2", stage=2)], [], [], "verdicts",
                                             claim=[store.keys.server_outbox(SERVER)], now=T0)
        return first, repeat, second, claimed, (await store.server_states([SERVER]))[0][0]

    first, repeat, second, claimed, fields = on_store(new_store, scenario)
    assert (first, repeat, second) == ([1], [0], [2])
    assert [(r.topic, r.key, r.value) for r in claimed] == [
        ("verdicts", SERVER.encode(), b'{"sequence":1,"stage":1}'),
        ("notes", b"contoso", b'{"notification_id":"n1"}'),
        ("verdicts", SERVER.encode(), b'{"sequence":2,"stage":2}'),
    ]
    assert (fields["fingerprint"], fields["sequence"], fields["stage"]) == ("f2", "2", "2")
    assert fields["verdict"] == '{"sequence":2,"stage":2}' and fields["issued_at"] == repr(T0 + 120)


def test_once_notifications_are_queued_once_per_id(new_store: StoreFactory) -> None:
    once = [(SERVER, "upcoming|2", notification("contoso", "upcoming|2"))]

    async def scenario(store: Store) -> Any:
        await store.commit([], once, [], "verdicts")
        await store.commit([], once, [], "verdicts")
        return await store.claim([store.keys.server_outbox(SERVER)], T0)

    assert [r.value for r in on_store(new_store, scenario)] == [b'{"notification_id":"upcoming|2"}']


def test_a_claim_is_exclusive_until_released_and_release_keeps_notifications(new_store: StoreFactory) -> None:
    async def scenario(store: Store) -> Any:
        outbox = store.keys.server_outbox(SERVER)
        _, claimed = await store.commit([commit("f1", notifications=[notification("contoso", "n1")])], [], [],
                                        "verdicts", claim=[outbox], now=T0)
        while_claimed = await store.claim([outbox], T0 + 1)
        pending_before = await store.pending_outboxes()
        abandoned = [len(records) for _, records in await store.abandoned_claims(T0 + 10)]
        not_yet = await store.abandoned_claims(T0 - 10)
        await store.release(claimed, "notes", {"metadata:0": 41})
        return (len(claimed), while_claimed, pending_before, abandoned, not_yet, await store.pending_outboxes(),
                await store.notifications("contoso", 10), await store.claim([outbox], T0 + 2),
                await store.progress())

    count, while_claimed, pending_before, abandoned, not_yet, pending_after, kept, reclaim, progress = \
        on_store(new_store, scenario)
    assert count == 2 and while_claimed == [] and reclaim == []
    assert len(pending_before) == 1
    assert abandoned == [2] and not_yet == []
    assert pending_after == []
    assert kept == [b'{"notification_id":"n1"}']
    assert progress == {"metadata:0": "41"}


def test_notifications_are_kept_newest_first(new_store: StoreFactory) -> None:
    async def scenario(store: Store) -> Any:
        outbox = store.keys.server_outbox(SERVER)
        for n in range(3):
            await store.commit([], [(SERVER, f"n{n}", notification("contoso", f"n{n}"))], [], "verdicts")
            await store.release(await store.claim([outbox], T0), "notes")
        return await store.notifications("contoso", 2)

    assert on_store(new_store, scenario) == [b'{"notification_id":"n2"}', b'{"notification_id":"n1"}']


# -------------------------------------------------------------------------------------------- timer

def test_due_items_come_earliest_first_and_a_renewed_item_stays(new_store: StoreFactory) -> None:
    other = "contoso/ex02.contoso.com"

    async def scenario(store: Store) -> Any:
        await store.commit([], [], [(other, T0 + 20), (SERVER, T0 + 10)], "verdicts")
        due = await store.due_items(T0 + 15, 500)
        both = await store.due_items(T0 + 30, 1)
        await store.commit([], [], [(SERVER, T0 + 50)], "verdicts")  # handling it scheduled a new time
        await store.remove_due_unless_renewed(due_member(DUE_SERVER, SERVER), T0 + 10)
        await store.remove_due_unless_renewed(due_member(DUE_SERVER, other), T0 + 20)
        return due, both, await store.due_items(T0 + 100, 500), (await store.server_states([SERVER]))[0][0]

    due, first_only, left, fields = on_store(new_store, scenario)
    assert due == first_only == [(due_member(DUE_SERVER, SERVER), T0 + 10)]
    assert left == [(due_member(DUE_SERVER, SERVER), T0 + 50)]
    assert fields["due_at"] == repr(T0 + 50)


def test_the_timer_lease_has_one_holder(new_store: StoreFactory) -> None:
    async def scenario(store: Store) -> list[str]:
        return [await store.hold_timer_lease("a:1", 5000), await store.hold_timer_lease("a:1", 5000),
                await store.hold_timer_lease("b:2", 5000)]

    assert on_store(new_store, scenario) == [LeaseState.ACQUIRED, LeaseState.RENEWED, LeaseState.HELD_ELSEWHERE]


def test_the_scenario_clock_is_unset_until_set(new_store: StoreFactory) -> None:
    async def scenario(store: Store) -> Any:
        before = await store.clock_now()
        await store.set_clock(T0 + 0.5)
        return before, await store.clock_now()

    assert on_store(new_store, scenario) == (None, T0 + 0.5)


# ---------------------------------------------------------------------------------- operator commands

def paused(until_day: int) -> PauseState:
    return PauseState(until=datetime(2026, 11, until_day, tzinfo=UTC), started_at=datetime(2026, 11, 1, tzinfo=UTC),
                      charged_year=2026, used=((2026, until_day - 1),))


def test_a_command_is_applied_once_then_open_until_completed(new_store: StoreFactory) -> None:
    seen: list[PauseState] = []

    def decide(state: PauseState) -> tuple[PauseOutcome, bytes]:
        seen.append(state)
        return PauseOutcome("pause_started", paused(8), "paused", 7), notification("contoso", "c1")

    async def scenario(store: Store) -> Any:
        applied = await store.record_command("contoso", "c1", decide)
        again = await store.record_command("contoso", "c1", decide)
        await store.queue_tenant_work("contoso", paused(8).until.timestamp())  # type: ignore[union-attr]
        pending = await store.pending_outboxes()
        due = await store.due_items(T0 * 2, 10)
        await store.complete_command("contoso", "c1")
        closed = await store.record_command("contoso", "c1", decide)
        return (applied, again, closed, (await store.pause_states(["contoso"]))["contoso"], pending, due,
                [r.value for r in await store.claim([store.keys.tenant_outbox("contoso")], T0)])

    applied, again, closed, pause, pending, due, records = on_store(new_store, scenario)
    assert applied[0] == CommandState.APPLIED and applied[1] is not None and applied[1].kind == "pause_started"
    assert again == (CommandState.OPEN, None) and closed == (CommandState.CLOSED, None)
    assert seen == [PauseState()]  # decided once, on the state before the command
    assert pause == paused(8)
    assert len(pending) == 1 and due == [(due_member(DUE_TENANT, "contoso"), paused(8).until.timestamp())]  # type: ignore[union-attr]
    assert records == [b'{"notification_id":"c1"}']


def test_a_refused_command_leaves_the_pause_and_still_notifies(new_store: StoreFactory) -> None:
    def refuse(state: PauseState) -> tuple[PauseOutcome, bytes]:
        return PauseOutcome("pause_refused", paused(20), "no days left", 0), notification("contoso", "c2")

    async def scenario(store: Store) -> Any:
        await store.record_command("contoso", "c1", lambda s: (PauseOutcome("pause_started", paused(8), "", 7),
                                                               notification("contoso", "c1")))
        outcome = await store.record_command("contoso", "c2", refuse)
        return outcome, (await store.pause_states(["contoso"]))["contoso"], \
            len(await store.claim([store.keys.tenant_outbox("contoso")], T0))

    (state, outcome), pause, queued = on_store(new_store, scenario)
    assert state == CommandState.APPLIED and outcome is not None and outcome.kind == "pause_refused"
    assert pause == paused(8) and queued == 2


def test_a_tenant_notification_is_emitted_once_per_id(new_store: StoreFactory) -> None:
    async def scenario(store: Store) -> Any:
        first = await store.emit_tenant_once("contoso", "expired|x", notification("contoso", "e"))
        second = await store.emit_tenant_once("contoso", "expired|x", notification("contoso", "e"))
        return first, second, await store.pending_outboxes(), (await store.pause_states(["contoso"]))["contoso"]

    first, second, pending, pause = on_store(new_store, scenario)
    assert (first, second, len(pending)) == (True, False, 1)
    assert pause == PauseState()  # the once-flag does not read as pause state


def test_outboxes_found_empty_leave_the_pending_set_when_claimed(new_store: StoreFactory) -> None:
    """A repeated once-only notification names its outbox pending but queues nothing: the claim that
    finds it empty (no claim open) drops the name, so the set does not grow and flushes stay small."""
    once = [(SERVER, "upcoming|2", notification("contoso", "upcoming|2"))]

    async def scenario(store: Store) -> Any:
        outbox, tenant_outbox = store.keys.server_outbox(SERVER), store.keys.tenant_outbox("contoso")
        _, first = await store.commit([], once, [], "verdicts", claim=[outbox], now=T0)
        await store.release(first, "notes")
        _, again = await store.commit([], once, [], "verdicts", claim=[outbox], now=T0 + 1)
        after_repeat = await store.pending_outboxes()
        await store.emit_tenant_once("contoso", "expired|x", notification("contoso", "e"))
        tenant_records = await store.claim(await store.pending_outboxes(), T0 + 2)
        await store.release(tenant_records, "notes")
        await store.emit_tenant_once("contoso", "expired|x", notification("contoso", "e"))
        repeated_tenant = await store.pending_outboxes()
        reclaimed = await store.claim(repeated_tenant, T0 + 3)
        return len(first), again, after_repeat, len(tenant_records), repeated_tenant == [tenant_outbox], \
            reclaimed, await store.pending_outboxes()

    first, again, after_repeat, tenant_records, named, reclaimed, pending = on_store(new_store, scenario)
    assert (first, again, after_repeat) == (1, [], [])
    assert (tenant_records, named, reclaimed, pending) == (1, True, [], [])


def test_an_open_claim_keeps_its_outbox_pending(new_store: StoreFactory) -> None:
    """Only an outbox with nothing queued AND no claim open leaves the set: an in-flight claim (its
    claimer may have died) must stay findable for recovery."""
    async def scenario(store: Store) -> Any:
        outbox = store.keys.server_outbox(SERVER)
        await store.commit([commit("f1")], [], [], "verdicts", claim=[outbox], now=T0)
        second_claim = await store.claim([outbox], T0 + 1)
        return second_claim, await store.pending_outboxes(), len(await store.abandoned_claims(T0 + 5))

    second_claim, pending, abandoned = on_store(new_store, scenario)
    assert second_claim == [] and len(pending) == 1 and abandoned == 1


# ------------------------------------------------------------------------------- reports and notifier

def test_overview_reads_servers_stages_and_pauses(new_store: StoreFactory) -> None:
    other = "contoso/ex02.contoso.com"

    async def scenario(store: Store) -> Any:
        await store.observe([observation(), observation(server_key=other), observation(server_key="fabrikam/mx")],
                            ["contoso", "fabrikam"])
        await store.commit([commit("f1", stage=2)], [], [], "verdicts")
        return (await store.tenant_overview(["contoso", "fabrikam"]), await store.server_stages([SERVER, other], 1),
                await store.tenant_known("fabrikam"), await store.tenant_known("nobody"))

    overview, stages, known, unknown = on_store(new_store, scenario)
    assert overview == [([SERVER, other], PauseState()), (["fabrikam/mx"], PauseState())]
    assert stages == ["2", None]
    assert (known, unknown) == (True, False)


def test_webhook_deliveries_are_remembered_for_the_ttl(new_store: StoreFactory) -> None:
    async def scenario(store: Store) -> Any:
        await store.mark_webhook_delivered("contoso", "old", T0, 100)
        await store.mark_webhook_delivered("contoso", "new", T0 + 150, 100)  # trims "old"
        return (await store.webhook_delivered_at("contoso", "old"), await store.webhook_delivered_at("contoso", "new"),
                await store.webhook_delivered_at("fabrikam", "new"))

    assert on_store(new_store, scenario) == (None, T0 + 150, None)


def test_a_busy_servers_batch_over_the_argument_bound_folds_whole(new_store: StoreFactory) -> None:
    evidence = [evidence_item(T0 + n, 1 if n % 2 else 0, f"15.2.1118.{n}") for n in range(1200)]
    busy = observation(first=T0, last=T0 + 1199, evidence=evidence, ids=[f"e{n}" for n in range(2500)])

    async def scenario(store: Store) -> Any:
        await store.observe([busy], ["contoso"])
        return (await store.server_states([SERVER]))[0][0], await store.server_reports([SERVER], [DAY], 10)

    fields, (report,) = on_store(new_store, scenario)
    assert fields["build"] == "15.2.1118.1199" and fields["evidence_at"] == "1793001199"  # the newest item
    assert fields["detected_at"] == "1793001199"  # vulnerable after the last current build
    assert abs(report.counts[0][1] - 2500) <= 50  # Redis estimates (HyperLogLog, ~0.8 %), memory counts
