"""Every Redis key Attune uses, in one place.

Queue keys: one set per queue, a queue being (action, group). Today every
action has the single group "default"; a later policy that splits an action
by parameter values gives each combination its own group, limit and FIFO.
All keys of one action share the hash tag ``{a<action id>}`` so every Lua
script touches a single Redis Cluster slot, and a future action-wide limit
across groups can stay atomic.

=================================  =====  ===========================================
key                                type   contents
=================================  =====  ===========================================
``<p>:{a<id>}:<group>:meta``        HASH   limit (-1 = unlimited), seq (last queue
                                           seq given), grant_seq (last grant seq),
                                           total_enqueued, total_terminal,
                                           total_completed, updated_ms (Redis clock),
                                           config (token of the action's definition,
                                           new at every save; queues/action_cache.py),
                                           terminal:<status> and rejected:<reason>
                                           (queue_full, at_limit: exact counters
                                           served on /metrics), rates (the rate
                                           limits in force, max:window_ms,...),
                                           wake_at (default group only: ms of the
                                           wake-up asked for while a rate limit
                                           holds a head back; cleared by that
                                           wake-up once it refilled every queue,
                                           so one long past due was lost)
``<p>:{a<id>}:<group>:waiting``     ZSET   execution id -> order score; lowest
                                           first: (9 - priority) * 10**12 + queue
                                           seq (queues.gate.order_score)
``<p>:{a<id>}:<group>:active``      ZSET   execution id -> lease deadline, ms
``<p>:{a<id>}:<group>:enqueued``    HASH   order score of a waiting execution ->
                                           enqueued ms; keyed by the score (unique:
                                           it holds the seq) rather than the id,
                                           40 bytes less per waiting execution
``<p>:{a<id>}:groups``              SET    the action's groups other than
                                           ``default`` (a policy with
                                           ``parameters`` makes one per
                                           combination of values; see
                                           queues.policy.group_of)
``<p>:{a<id>}:starts``              ZSET   execution id -> grant time (ms) of the
                                           action's grants within its longest rate
                                           window (only while a rate limit applies)
``<p>:lock:<name>``                 STR    a redis-py Lock: ``reaper``,
                                           ``reconcile:<action id>``,
                                           ``stats-flush``
``<p>:cache:1:throttle_*``          LIST   Django's cache (settings.CACHES): the API
                                           throttles' request times per user
                                           (``throttle_user_<id>``) and per
                                           anonymous IP (``throttle_anon_<ip>``)
=================================  =====  ===========================================

On a Redis Cluster (``REDIS_URL=redis+cluster://...``) an action's keys
live on the primary owning its hash tag's slot, so actions spread over the
primaries; the lock and cache keys carry no tag and land wherever their
name hashes, each a single key, so nothing needs them together. Nothing
derives a key inside a script, and nothing lists keys: whatever spans
actions reads them by name from the actions table, one pipelined call per
slot's primary (docs/scaling.md).

``<p>`` is ``settings.ATTUNE_REDIS_PREFIX`` (default ``attune``). The Celery
broker keeps its own keys (``default``, ``unacked``, ``_kombu.*``) under
the broker URL; they are Celery's, not described here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

DEFAULT_GROUP = "default"


def prefix() -> str:
    return str(settings.ATTUNE_REDIS_PREFIX)


@dataclass(frozen=True)
class QueueRef:
    """One FIFO queue: an action and one of its groups."""

    action_id: int
    group: str = DEFAULT_GROUP

    @property
    def _base(self) -> str:
        return f"{prefix()}:{{a{self.action_id}}}:{self.group}"

    @property
    def meta(self) -> str:
        return f"{self._base}:meta"

    @property
    def waiting(self) -> str:
        return f"{self._base}:waiting"

    @property
    def active(self) -> str:
        return f"{self._base}:active"

    @property
    def enqueued(self) -> str:
        return f"{self._base}:enqueued"

    def all_keys(self) -> list[str]:
        return [self.meta, self.waiting, self.active, self.enqueued]


def starts_key(action_id: int) -> str:
    """The ZSET of an action's recent grant times, for its rate limits."""
    return f"{prefix()}:{{a{action_id}}}:starts"


def groups_key(action_id: int) -> str:
    """The SET of an action's groups other than the default one."""
    return f"{prefix()}:{{a{action_id}}}:groups"


def lock_key(name: str) -> str:
    return f"{prefix()}:lock:{name}"
