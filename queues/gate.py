"""The FIFO concurrency gate: typed wrappers over the Lua scripts in lua/.

Each transition is one script run, so any number of processes on any number
of machines can admit and release at once without a read-then-write race.
The gate knows nothing of the database; queues/dispatch.py ties the two.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from redis.commands.core import AsyncScript, Script

from queues.keys import DEFAULT_GROUP, QueueRef, groups_key, starts_key
from queues.redis_client import RedisClient, get_redis, is_cluster

LUA_DIR = Path(__file__).resolve().parent / "lua"
UNLIMITED = -1
# A waiting execution's order score is band * SCORE_BAND + its queue seq,
# band = MAX_PRIORITY - priority: a higher priority first, equal ones in
# request order. Seqs stay below the band (a trillion requests per queue),
# and the largest score below 2**53, where a Redis score is still exact.
SCORE_BAND = 10**12
# The same as executions.models' (the gate imports no model; a test checks).
MAX_PRIORITY = 9
DEFAULT_PRIORITY = 5


def order_score(priority: int, seq: int) -> int:
    return (MAX_PRIORITY - priority) * SCORE_BAND + seq


def seq_of(score: float) -> int:
    return int(score) % SCORE_BAND


class _KeepLimit:
    """The limit argument of a release that keeps the queue's stored limit."""

    def __repr__(self) -> str:
        return "KEEP_LIMIT"


# A run ending needs no limit: every change of one refills the queue with it.
KEEP_LIMIT = _KeepLimit()


# (max executions, window in ms): at most max grants of the action in any window.
RateLimits = tuple[tuple[int, int], ...]


def rates_arg(rates: RateLimits) -> str:
    return ",".join(f"{max_executions}:{window_ms}" for max_executions, window_ms in rates)


def _limit_arg(limit: int | _KeepLimit | None) -> int | str:
    if isinstance(limit, _KeepLimit):
        return ""
    return UNLIMITED if limit is None else int(limit)


@dataclass(frozen=True)
class Grant:
    execution_id: str
    grant_seq: int


@dataclass(frozen=True)
class Admission:
    """What admit_v6 decided for one execution of a batch. ``outcome`` is
    granted, queued, cancelled (no slot, and the policy cancels at the
    limit) or duplicate."""

    execution_id: str
    outcome: str
    seq: int | None = None
    grant_seq: int | None = None
    position: int | None = None


@dataclass(frozen=True)
class BatchAdmission:
    """What admit_v6 decided for a batch. ``outcome`` is admitted (see
    ``admissions``, one per id in request order), full (nothing written;
    ``waiting`` says how many wait) or uninitialized (nothing written).
    ``config`` is the queue's action config token (see Release)."""

    outcome: str
    admissions: list[Admission] = field(default_factory=list)
    waiting: int | None = None
    config: str = ""
    # The group whose queue was full.
    group: str | None = None
    # When a rate limit lets the next waiting one through (ms, Redis clock),
    # if the caller is to schedule a wake-up for it; else 0.
    wake_ms: int = 0
    # Whether rate limits apply: each run then reports its start (mark_started).
    rated: bool = False


@dataclass(frozen=True)
class Release:
    """``released`` is True only for the call that actually freed the slot.

    ``config`` is the token of the action's definition stored with the
    queue: it changes whenever the action (or its pack) is saved, so a
    process that cached the definition under another token reads it again.
    """

    released: bool
    initialized: bool
    grants: list[Grant] = field(default_factory=list)
    config: str = ""
    # As BatchAdmission's.
    wake_ms: int = 0
    rated: bool = False


@dataclass(frozen=True)
class QueueSnapshot:
    queue: QueueRef
    exists: bool
    limit: int | None
    waiting: int
    active: int
    oldest_enqueued_ms: int | None
    total_enqueued: int
    total_terminal: int
    total_completed: int
    updated_ms: int | None
    seq: int
    grant_seq: int
    # Exact counters, whichever process moved them: executions that ended,
    # by terminal status, and requests refused, by reason.
    terminal_by_status: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RestoreState:
    limit: int | None
    seq: int
    grant_seq: int
    total_enqueued: int
    total_terminal: int
    total_completed: int
    # (execution id, order score, enqueued at ms), in queue order
    waiting: list[tuple[str, int, int]]
    active: list[str]
    terminal_by_status: dict[str, int] = field(default_factory=dict)


INCLUDE = re.compile(r"^--!include (?P<name>[\w.]+)$", re.MULTILINE)


def script_text(path: Path) -> str:
    """A script's text with each ``--!include <file>`` line replaced by that
    file of lua/lib/: Redis runs one self-contained text per script."""
    return INCLUDE.sub(lambda match: (LUA_DIR / "lib" / match["name"]).read_text(), path.read_text())


class Gate:
    """The scripts, registered once per client (EVALSHA with a reload on
    NOSCRIPT, which redis-py's Script does for us). On a Redis Cluster each
    run goes to the primary of its keys' slot, the one slot of their action's
    hash tag."""

    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self.cluster = is_cluster(client)
        self._scripts: dict[str, Script | AsyncScript] = {
            path.stem: client.register_script(script_text(path)) for path in sorted(LUA_DIR.glob("*.lua"))
        }

    def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return self._scripts[name](keys=keys, args=args)

    def admit(
        self,
        queue: QueueRef,
        execution_ids: list[str],
        *,
        limit: int | None,
        max_waiting: int,
        lease_ms: int,
        config: str = "",
        priorities: list[int] | None = None,
        cancel_at_limit: bool = False,
        rates: RateLimits = (),
    ) -> BatchAdmission:
        """``admit_groups`` for a batch of one queue."""
        return self.admit_groups(
            queue.action_id,
            [(queue.group, execution_ids, priorities or [DEFAULT_PRIORITY] * len(execution_ids))],
            limit=limit,
            max_waiting=max_waiting,
            lease_ms=lease_ms,
            config=config,
            cancel_at_limit=cancel_at_limit,
            rates=rates,
        )

    def admit_groups(
        self,
        action_id: int,
        groups: list[tuple[str, list[str], list[int]]],
        *,
        limit: int | None,
        max_waiting: int,
        lease_ms: int,
        config: str = "",
        cancel_at_limit: bool = False,
        rates: RateLimits = (),
    ) -> BatchAdmission:
        """Admit a batch of one action in one script run: per group, its
        execution ids in request order, each with its priority. All or
        nothing across groups when one is full. ``config`` is stored as the
        action's config token if it has none. With ``cancel_at_limit``, the
        ones that find no free slot are cancelled rather than queued;
        ``rates`` hold back grants past them (those wait at their place).
        Admissions come in ``groups`` order."""
        keys = [groups_key(action_id), QueueRef(action_id, DEFAULT_GROUP).meta, starts_key(action_id)]
        args: list[Any] = [
            _limit_arg(limit),
            max_waiting,
            lease_ms,
            config or new_config_token(),
            "cancel" if cancel_at_limit else "queue",
            rates_arg(rates),
            len(groups),
        ]
        ordered_ids: list[str] = []
        for group, execution_ids, priorities in groups:
            keys.extend(QueueRef(action_id, group).all_keys())
            args.extend([group, len(execution_ids)])
            for execution_id, priority in zip(execution_ids, priorities, strict=True):
                args.extend([execution_id, MAX_PRIORITY - priority])
            ordered_ids.extend(execution_ids)
        reply = self._run("admit_v6", keys, args)
        outcome = str(reply[0])
        if outcome == "full":
            return BatchAdmission(outcome, group=str(reply[1]), waiting=int(reply[2]))
        if outcome != "admitted":
            return BatchAdmission(outcome)
        admissions = []
        for execution_id, i in zip(ordered_ids, range(4, len(reply), 3), strict=True):
            code, seq, n = str(reply[i]), int(reply[i + 1]), int(reply[i + 2])
            if code == "g":
                admissions.append(Admission(execution_id, "granted", seq=seq, grant_seq=n))
            elif code == "q":
                admissions.append(Admission(execution_id, "queued", seq=seq, position=n))
            elif code == "c":
                admissions.append(Admission(execution_id, "cancelled", seq=seq))
            else:
                admissions.append(Admission(execution_id, "duplicate"))
        return BatchAdmission(
            outcome, admissions, config=str(reply[1]), wake_ms=int(reply[2]), rated=reply[3] == 1
        )

    def groups(self, action_ids: list[int]) -> dict[int, list[str]]:
        """Each action's groups, "default" first, in one round trip."""
        if not action_ids:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for action_id in action_ids:
            pipe.smembers(groups_key(action_id))
        return {
            action_id: [DEFAULT_GROUP, *sorted(str(member) for member in members)]
            for action_id, members in zip(action_ids, pipe.execute(), strict=True)
        }

    def release(
        self,
        queue: QueueRef,
        execution_id: str | None,
        *,
        limit: int | _KeepLimit | None,
        lease_ms: int,
        terminal_status: str | None = None,
        requeue_score: int | None = None,
        config: str = "",
        rates: RateLimits | _KeepLimit = KEEP_LIMIT,
    ) -> Release:
        """Free ``execution_id``'s slot (None: only refill after a limit
        change) and grant free slots to the queue head, in order, as far as
        the limit and the rate limits (``rates``, stored as the queue's new
        ones; KEEP_LIMIT keeps the stored ones) allow. A ``config`` token is
        stored as the queue's new one."""
        rates_value = "" if isinstance(rates, _KeepLimit) else rates_arg(rates) or "none"
        reply = self._run(
            "release_v4",
            [
                *queue.all_keys(),
                starts_key(queue.action_id),
                QueueRef(queue.action_id, DEFAULT_GROUP).meta,
            ],
            [
                execution_id or "",
                _limit_arg(limit),
                terminal_status or "",
                "" if requeue_score is None else requeue_score,
                lease_ms,
                config,
                rates_value,
            ],
        )
        released = int(reply[0])
        if released == -1:
            return Release(released=False, initialized=False)
        grants = [Grant(str(reply[i]), int(reply[i + 1])) for i in range(4, len(reply), 2)]
        return Release(
            released=released == 1,
            initialized=True,
            grants=grants,
            config=str(reply[1]),
            wake_ms=int(reply[2]),
            rated=reply[3] == 1,
        )

    def mark_started(self, action_id: int, execution_id: str) -> bool:
        """Move a started run's entry in its action's rate window to now."""
        return bool(self._run("started_v1", [starts_key(action_id)], [execution_id]))

    def woken(self, action_id: int) -> bool:
        """Clear the action's wake-up time once a wake-up refilled all its
        queues, unless a later one was asked for meanwhile."""
        return bool(self._run("woken_v1", [QueueRef(action_id, DEFAULT_GROUP).meta], []))

    def restore_starts(self, action_id: int, grants: list[tuple[str, int]]) -> int:
        """Put back the grant times (execution id, ms) of an action's rate
        window that Redis lost; returns how many were missing."""
        if not grants:
            return 0
        mapping = {execution_id: granted_ms for execution_id, granted_ms in grants}
        return int(self.redis.zadd(starts_key(action_id), mapping, nx=True))

    def dequeue(self, queue: QueueRef, execution_id: str, *, terminal_status: str) -> bool:
        return bool(
            self._run(
                "dequeue_v2", [queue.meta, queue.waiting, queue.enqueued], [execution_id, terminal_status]
            )
        )

    def renew(self, queue: QueueRef, execution_ids: list[str], *, lease_ms: int) -> int:
        if not execution_ids:
            return 0
        return int(self._run("renew_v1", [queue.active], [lease_ms, *execution_ids]))

    def renew_many(self, by_queue: dict[QueueRef, list[str]], *, lease_ms: int) -> int:
        """Renew the leases of executions in several queues in one round trip;
        returns how many were extended."""
        if not by_queue:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        renew = self._scripts["renew_v1"]
        for queue, execution_ids in by_queue.items():
            if self.cluster:
                # A cluster pipeline refuses EVALSHA (it could not load a
                # script missing on a node, a promoted replica's say) and
                # its eval() means something else; a raw EVAL goes to each
                # key's primary, the script text being a few hundred bytes.
                pipe.execute_command("EVAL", renew.script, 1, queue.active, lease_ms, *execution_ids)
            else:
                renew(keys=[queue.active], args=[lease_ms, *execution_ids], client=pipe)
        return sum(int(renewed) for renewed in pipe.execute())

    def restore(self, queue: QueueRef, state: RestoreState, *, lease_ms: int) -> tuple[int, int]:
        args: list[Any] = [
            _limit_arg(state.limit),
            state.seq,
            state.grant_seq,
            state.total_enqueued,
            state.total_terminal,
            state.total_completed,
            lease_ms,
            len(state.terminal_by_status),
        ]
        for status, count in state.terminal_by_status.items():
            args.extend([status, count])
        args.append(len(state.waiting))
        for execution_id, score, since_ms in state.waiting:
            args.extend([execution_id, score, since_ms])
        args.extend(state.active)
        if queue.group != DEFAULT_GROUP:
            # Idempotent, so it need not be atomic with the restore.
            self.redis.sadd(groups_key(queue.action_id), queue.group)
        reply = self._run("restore_v3", queue.all_keys(), args)
        return int(reply[0]), int(reply[1])

    def now_ms(self) -> int:
        """The Redis clock, in ms. On a cluster, one node's clock (the
        client's default node): the scripts stamp each action's keys with
        the clock of its own primary, so the nodes' clocks must agree to well
        within a lease (NTP), as they do on one host."""
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def expired(self, queue: QueueRef, *, now_ms: int) -> list[str]:
        """Executions whose lease deadline has passed."""
        return [str(member) for member in self.redis.zrangebyscore(queue.active, "-inf", now_ms)]

    def waiting_ids(self, queue: QueueRef, start: int = 0, end: int = -1) -> list[str]:
        return [str(member) for member in self.redis.zrange(queue.waiting, start, end)]

    def active_ids(self, queue: QueueRef) -> list[str]:
        return [str(member) for member in self.redis.zrange(queue.active, 0, -1)]

    def waiting_entry(self, queue: QueueRef, execution_id: str) -> tuple[int, int | None] | None:
        """(queue seq, enqueued at ms) of a waiting execution, else None."""
        score = self.redis.zscore(queue.waiting, execution_id)
        if score is None:
            return None
        since = self.redis.hget(queue.enqueued, str(int(score)))
        return seq_of(score), None if since is None else int(since)

    def position(self, queue: QueueRef, execution_id: str) -> int | None:
        """1-based place in the queue (1 = next), or None if not waiting."""
        rank = self.redis.zrank(queue.waiting, execution_id)
        return None if rank is None else int(rank) + 1

    def snapshots(self, queues: list[QueueRef]) -> list[QueueSnapshot]:
        """Read many queues' counters in one round trip."""
        if not queues:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            pipe.hgetall(queue.meta)
            pipe.zcard(queue.waiting)
            pipe.zcard(queue.active)
            pipe.zrange(queue.waiting, 0, 0, withscores=True)
        replies = pipe.execute()
        heads = [replies[i * 4 + 3] for i in range(len(queues))]
        pipe = self.redis.pipeline(transaction=False)
        for queue, head in zip(queues, heads, strict=True):
            if head:
                # Enqueue times are kept by order score.
                pipe.hget(queue.enqueued, str(int(head[0][1])))
        since_replies = iter(pipe.execute() if any(heads) else [])
        snapshots = []
        for i, queue in enumerate(queues):
            meta, waiting, active, head = replies[i * 4 : i * 4 + 4]
            oldest = next(since_replies) if head else None
            limit = int(meta.get("limit", UNLIMITED))
            snapshots.append(
                QueueSnapshot(
                    queue=queue,
                    exists=bool(meta),
                    limit=None if limit < 0 else limit,
                    waiting=int(waiting),
                    active=int(active),
                    oldest_enqueued_ms=int(oldest) if oldest else None,
                    total_enqueued=int(meta.get("total_enqueued", 0)),
                    total_terminal=int(meta.get("total_terminal", 0)),
                    total_completed=int(meta.get("total_completed", 0)),
                    updated_ms=int(meta["updated_ms"]) if "updated_ms" in meta else None,
                    seq=int(meta.get("seq", 0)),
                    grant_seq=int(meta.get("grant_seq", 0)),
                    terminal_by_status=_counters(meta, "terminal:"),
                    rejected_by_reason=_counters(meta, "rejected:"),
                )
            )
        return snapshots

    def action_snapshots(self, action_ids: list[int]) -> list[QueueSnapshot]:
        """One snapshot per action, its groups' queues added up (the
        default group's QueueRef names it): waiting, active and every
        counter summed, the oldest wait and the latest update of any group.
        ``limit`` is each group's. Two round trips, however many groups."""
        by_action = self.group_snapshots(action_ids)
        return [merged(by_action[action_id]) for action_id in action_ids]

    def group_snapshots(self, action_ids: list[int]) -> dict[int, list[QueueSnapshot]]:
        """Each action's snapshot per group, "default" first; two round trips."""
        groups = self.groups(action_ids)
        queues = [QueueRef(action_id, group) for action_id in action_ids for group in groups[action_id]]
        by_action: dict[int, list[QueueSnapshot]] = {action_id: [] for action_id in action_ids}
        for snapshot in self.snapshots(queues):
            by_action[snapshot.queue.action_id].append(snapshot)
        return by_action

    def delete(self, queue: QueueRef) -> None:
        self.redis.delete(*queue.all_keys())
        if queue.group != DEFAULT_GROUP:
            self.redis.srem(groups_key(queue.action_id), queue.group)


def merged(snapshots: list[QueueSnapshot]) -> QueueSnapshot:
    """An action's group snapshots added up (see Gate.action_snapshots)."""
    first = snapshots[0]
    if len(snapshots) == 1:
        return first

    def added(name: str) -> dict[str, int]:
        total: dict[str, int] = {}
        for snapshot in snapshots:
            for key, count in getattr(snapshot, name).items():
                total[key] = total.get(key, 0) + count
        return total

    oldest = [s.oldest_enqueued_ms for s in snapshots if s.oldest_enqueued_ms is not None]
    updated = [s.updated_ms for s in snapshots if s.updated_ms is not None]
    return QueueSnapshot(
        queue=first.queue,
        exists=first.exists,
        limit=first.limit,
        waiting=sum(s.waiting for s in snapshots),
        active=sum(s.active for s in snapshots),
        oldest_enqueued_ms=min(oldest) if oldest else None,
        total_enqueued=sum(s.total_enqueued for s in snapshots),
        total_terminal=sum(s.total_terminal for s in snapshots),
        total_completed=sum(s.total_completed for s in snapshots),
        updated_ms=max(updated) if updated else None,
        seq=first.seq,
        grant_seq=first.grant_seq,
        terminal_by_status=added("terminal_by_status"),
        rejected_by_reason=added("rejected_by_reason"),
    )


def _counters(meta: dict[str, str], prefix: str) -> dict[str, int]:
    return {name[len(prefix) :]: int(value) for name, value in meta.items() if name.startswith(prefix)}


def new_config_token() -> str:
    """A token for a new definition of an action: unique, so a cache keyed
    by an older token (one from before Redis lost its state included) never
    matches it."""
    return secrets.token_hex(8)


@lru_cache(maxsize=1)
def get_gate() -> Gate:
    return Gate(get_redis())
