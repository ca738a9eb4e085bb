"""The Redis key schema: every key patchgate writes, in one place.

All keys of one server share the Redis Cluster hash tag ``{<server_key>}`` and all keys of one
tenant the tag ``{t:<tenant_id>}``, so each server-side script touches a single slot.
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
                                                    (queued or in flight)
<p>:clock                                   string  scenario clock (epoch seconds) for PATCHGATE_CLOCK=redis
<p>:timer:lease                             string  the worker (host:pid) running the timer; expires
<p>:progress                                hash    ``<topic>:<partition>`` → last offset fully processed
                                                    (verdicts published), ``owner:<topic>:<partition>``
                                                    → the worker (host:pid) that processed it, and
                                                    ``timer`` → the clock the leader's timer last finished
==========================================  ======  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass

HLL_RETENTION_SECONDS = 40 * 86400
HISTORY_LENGTH = 200
NOTIFICATIONS_KEPT = 500


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
