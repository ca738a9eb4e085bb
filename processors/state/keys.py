"""The Redis key schema: every key patchgate writes, in one place.

All keys of one server share the Redis Cluster hash tag ``{<server_key>}`` and all keys of one
tenant the tag ``{t:<tenant_id>}``, so each server-side script and the pause transaction touch a
single slot. The global keys (``tenants``, ``due``, ``outbox:pending``, ``clock``, ``timer:lease``,
``progress``) are written by single-key commands only, never from a script with a server's keys.
``<p>`` is ``PATCHGATE_KEY_PREFIX`` (default ``pg``).

==========================================  ======  =====================================================
Key                                         Type    Content
==========================================  ======  =====================================================
<p>:srv:{<server_key>}                      hash    server state (fields: see ``observe.lua``) and the
                                                    last verdict (``verdict``, ``fingerprint``, ``sequence``)
<p>:srv:{<server_key>}:ips                  set     client IPs seen (capped, see observe.lua)
<p>:srv:{<server_key>}:helos                set     HELO names seen (capped)
<p>:srv:{<server_key>}:hll:<YYYY-MM-DD>     HLL     event_ids seen that day: message counts that stay
                                                    right under redelivery; expire after 40 days
<p>:srv:{<server_key>}:history              list    transitions (JSON), newest first, capped at 200
<p>:srv:{<server_key>}:outbox               list    verdict/notification records committed, not yet
                                                    claimed for publishing (claim_outbox.lua)
<outbox>:inflight                           list    records claimed by a publisher, awaiting Kafka acks
<outbox>:claimed_at                         string  when that claim was made (epoch, wall clock)
<p>:ten:{t:<tenant_id>}:servers             set     the tenant's server keys
<p>:ten:{t:<tenant_id>}:pause               hash    pause state: until, started_at, used:<year>
<p>:ten:{t:<tenant_id>}:commands            set     processed command ids (idempotent commands)
<p>:ten:{t:<tenant_id>}:commands:open       set     command ids applied whose effects (re-evaluation,
                                                    notification) are not yet known to be complete
<p>:ten:{t:<tenant_id>}:notifications       list    recent notifications (JSON), newest first, capped
<p>:ten:{t:<tenant_id>}:outbox              list    tenant-wide notifications not yet delivered
<p>:ten:{t:<tenant_id>}:webhook-delivered   zset    notification ids delivered to the tenant's webhook
                                                    (score = delivery time; trimmed, expires)
<p>:tenants                                 set     every tenant id seen
<p>:due                                     zset    timer work: member ``s|<server_key>`` or
                                                    ``t|<tenant_id>``, score = due epoch seconds
<p>:outbox:pending                          set     outbox list keys that may hold undelivered records
                                                    (queued or in flight); a claim that finds one with
                                                    nothing queued and no claim open removes it
<p>:clock                                   string  scenario clock (epoch seconds) for PATCHGATE_CLOCK=redis
<p>:timer:lease                             string  the worker (host:pid) running the timer; expires
<p>:progress                                hash    ``<topic>:<partition>`` → last offset fully processed
                                                    (verdicts published), ``owner:<topic>:<partition>``
                                                    → the worker (host:pid) that processed it, and
                                                    ``timer`` → the clock the leader's timer last finished,
                                                    ``policy`` → the policy and catalog content every
                                                    server was last re-evaluated under
==========================================  ======  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

HLL_RETENTION_SECONDS = 40 * 86400
HISTORY_LENGTH = 200
NOTIFICATIONS_KEPT = 500


class ServerField:
    """Field names of the server hash ``<p>:srv:{<server_key>}``: written by ``observe.lua`` (the
    evidence fold), ``commit_verdict.lua`` (the verdict) and the store (``due_at``)."""

    TENANT_ID = "tenant_id"
    SERVER = "server"
    FIRST_SEEN = "first_seen"
    LAST_SEEN = "last_seen"
    EVIDENCE_AT = "evidence_at"
    STATUS = "status"
    RULE = "rule"
    PRODUCT = "product"
    PRODUCT_ID = "product_id"  # the stable product id (exchange, exim, ...) beside the product's name
    VERSION = "version"  # the version the product stamped
    BUILD = "build"
    BUILD_LONG = "build_long"
    RELEASE_NAME = "release_name"
    REASON = "reason"
    RECOMMENDED = "recommended"
    HOP = "hop"
    LAST_STATUS = "last_status"
    LAST_RULE = "last_rule"
    LAST_STATUS_AT = "last_status_at"
    CONNECTOR_TYPE = "connector_type"
    LAST_HELO = "last_helo"
    DETECTED_AT = "detected_at"
    CURRENT_AT = "current_at"
    VERDICT = "verdict"
    FINGERPRINT = "fingerprint"
    SEQUENCE = "sequence"
    STAGE = "stage"
    ISSUED_AT = "issued_at"
    DUE_AT = "due_at"
    SENT_PREFIX = "sent:"  # sent:<notification_id>, set once by emit_once.lua


class PauseField:
    """Field names of the tenant pause hash ``<p>:ten:{t:<tenant_id>}:pause``."""

    UNTIL = "until"
    STARTED_AT = "started_at"
    CHARGED_YEAR = "charged_year"
    USED_PREFIX = "used:"  # used:<year> -> days used that year


# The server-hash fields a batch needs back from observe.lua (enforcement.verdicts.ServerState and
# the change checks of the batch processor); the rest of the hash (verdict JSON, hop, ...) stays put.
STATE_FIELDS = (ServerField.TENANT_ID, ServerField.SERVER, ServerField.STATUS, ServerField.RULE,
                ServerField.PRODUCT, ServerField.BUILD, ServerField.RELEASE_NAME, ServerField.RECOMMENDED,
                ServerField.DETECTED_AT, ServerField.CONNECTOR_TYPE, ServerField.STAGE, ServerField.ISSUED_AT,
                ServerField.FINGERPRINT, ServerField.DUE_AT, ServerField.SEQUENCE, ServerField.PRODUCT_ID,
                ServerField.VERSION)

# Members of the timer's ``<p>:due`` sorted set: a server's next stage time or a tenant's pause end.
DUE_SERVER = "s"
DUE_TENANT = "t"


def due_member(kind: str, name: str) -> str:
    """The ``<p>:due`` member for a server key (``DUE_SERVER``) or a tenant id (``DUE_TENANT``)."""
    return f"{kind}|{name}"


def parse_due_member(member: str) -> tuple[str, str]:
    """(kind, name) of a ``<p>:due`` member: the inverse of :func:`due_member`."""
    kind, _, name = member.partition("|")
    return kind, name


# Progress marks (``<p>:progress`` fields): ``<topic>:<partition>``, ``owner:<topic>:<partition>``, ``timer``,
# ``policy``.
PROGRESS_TIMER = "timer"
PROGRESS_POLICY = "policy"


def progress_partition(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def progress_owner(topic: str, partition: int) -> str:
    return f"owner:{topic}:{partition}"


@dataclass(frozen=True, slots=True)
class KeySchema:
    prefix: str = "pg"

    def server(self, server_key: str) -> str:
        return f"{self.prefix}:srv:{{{server_key}}}"

    def server_ips(self, server_key: str) -> str:
        return f"{self.server(server_key)}:ips"

    def server_helos(self, server_key: str) -> str:
        return f"{self.server(server_key)}:helos"

    def server_day_hll(self, server_key: str, day: str) -> str:
        return f"{self.server(server_key)}:hll:{day}"

    def server_history(self, server_key: str) -> str:
        return f"{self.server(server_key)}:history"

    def server_outbox(self, server_key: str) -> str:
        return f"{self.server(server_key)}:outbox"

    def tenant_servers(self, tenant_id: str) -> str:
        return f"{self.prefix}:ten:{{t:{tenant_id}}}:servers"

    def tenant_pause(self, tenant_id: str) -> str:
        return f"{self.prefix}:ten:{{t:{tenant_id}}}:pause"

    def tenant_commands(self, tenant_id: str) -> str:
        return f"{self.prefix}:ten:{{t:{tenant_id}}}:commands"

    def tenant_commands_open(self, tenant_id: str) -> str:
        return f"{self.tenant_commands(tenant_id)}:open"

    def tenant_notifications(self, tenant_id: str) -> str:
        return f"{self.prefix}:ten:{{t:{tenant_id}}}:notifications"

    def tenant_outbox(self, tenant_id: str) -> str:
        return f"{self.prefix}:ten:{{t:{tenant_id}}}:outbox"

    def tenant_webhook_delivered(self, tenant_id: str) -> str:
        return f"{self.prefix}:ten:{{t:{tenant_id}}}:webhook-delivered"

    @staticmethod
    def outbox_inflight(outbox: str) -> str:
        return f"{outbox}:inflight"

    @staticmethod
    def outbox_claimed_at(outbox: str) -> str:
        return f"{outbox}:claimed_at"

    @property
    def tenants(self) -> str:
        return f"{self.prefix}:tenants"

    @property
    def due(self) -> str:
        return f"{self.prefix}:due"

    @property
    def outbox_pending(self) -> str:
        return f"{self.prefix}:outbox:pending"

    @property
    def progress(self) -> str:
        return f"{self.prefix}:progress"

    @property
    def timer_lease(self) -> str:
        return f"{self.prefix}:timer:lease"

    @property
    def clock(self) -> str:
        return f"{self.prefix}:clock"
