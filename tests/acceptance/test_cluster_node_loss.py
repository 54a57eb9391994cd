"""A Redis Cluster primary killed with SIGKILL mid-burst. Without a
replica it is started again on its port, with its nodes.conf and none of
its data (no persistence): the gate of the actions on it is gone, and
requests made while it is down cannot pass their gate step. PostgreSQL
still knows every execution, so the reaper rebuilds what the node lost and
admits what was requested meanwhile; every execution runs once, no limit
is passed, and grants follow each queue's order. The actions on the other
primaries keep running, unless the cluster stops serving every slot once
one is lost (``cluster-require-full-coverage yes``, Redis's default). With
a replica, the replica takes over with the queues, once the others mark
the primary failed; requests made until then are admitted the same way.

The test prints what it measured (run pytest with -s to see it); those are
the figures of docs/scaling.md, "When a primary fails"."""

from __future__ import annotations

import itertools
import re
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from executions.models import Action, Execution, ExecutionStatus
from executions.services import request_execution
from queues.gate import get_gate
from queues.keys import QueueRef, lock_key
from queues.redis_client import UNAVAILABLE_ERRORS, get_redis
from tests.conftest import WorkerProcess, wait_until
from tests.fault_actions import read_runs
from tests.faults import wait_gate_drained
from tests.helpers import in_request_order, max_concurrency, wait_all_terminal
from tests.local_servers import CLUSTER_NODE_TIMEOUT_MS, CLUSTER_PRIMARIES, LOOPBACK
from tests.servers import ClusterOptions, RunningCluster
from tests.stacks import CLUSTER, Stack, use_stack

pytestmark = [pytest.mark.acceptance, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
S = ExecutionStatus
# At least this many actions on the primary killed, and as many elsewhere.
ACTIONS_PER_SIDE = 3
BEFORE_KILL = 150
DURING_OUTAGE = 60
TOTAL = 300
# Long enough that the actions of the surviving primaries still have work
# waiting when the outage ends, so a pause would show.
RUN_SECONDS = 0.1
# A node restarted by its supervisor within seconds, well past the cluster
# node timeout, so the other nodes do mark it failed.
OUTAGE_SECONDS = 5.0
# Longer than the outage: what the test sees is the node's loss, not leases
# of live runs running out because nobody could renew them meanwhile (the
# shared fast lease of 4 s is shorter than the outage).
LEASE_SECONDS = 10.0
RESTART_FULL_COVERAGE = ClusterOptions()
RESTART_PARTIAL_COVERAGE = ClusterOptions(config=("--cluster-require-full-coverage", "no"))
REPLICA = ClusterOptions(replicas=1)


@pytest.fixture
def stack(request: pytest.FixtureRequest, private_redis_cluster: RunningCluster) -> Iterator[Stack]:
    """The gate on this test's own cluster: killing one of its nodes
    breaks no other test."""
    yield from use_stack(request, CLUSTER, cluster_url=private_redis_cluster.url)


def primary_port(key: str) -> int:
    """The port of the primary owning ``key``'s slot (CLUSTER SLOTS, as
    the gate's client learned it)."""
    return int(get_redis().get_node_from_key(key).port)


def make_actions(make_action: Any) -> tuple[int, list[Action], list[Action]]:
    """Actions until one primary holds ACTIONS_PER_SIDE of them and the
    others as many together: (that primary's port, its actions, the rest).
    Limits alternate 1 and 2."""
    actions: list[Action] = []
    while True:
        index = len(actions)
        actions.append(
            make_action(
                f"node_loss_{index}",
                entrypoint="tests.fault_actions.record_run",
                concurrency_limit=1 + index % 2,
            )
        )
        by_port = Counter(primary_port(QueueRef(action.pk).meta) for action in actions)
        victim, on_victim = by_port.most_common(1)[0]
        if on_victim >= ACTIONS_PER_SIDE and len(actions) - on_victim >= ACTIONS_PER_SIDE:
            lost = [a for a in actions if primary_port(QueueRef(a.pk).meta) == victim]
            kept = [a for a in actions if a not in lost]
            return victim, lost, kept
        assert len(actions) < 30, by_port


def gate_answers(actions: list[Action]) -> bool:
    """Whether every one of these actions has its gate state (a failing
    call counts as no)."""
    try:
        return all(s.exists for s in get_gate().snapshots([QueueRef(a.pk) for a in actions]))
    except UNAVAILABLE_ERRORS:
        return False


def logged_errors(processes: list[WorkerProcess]) -> Counter[str]:
    """The errors the processes logged, by kind: exception class names on
    traceback lines and the messages of logged failures."""
    kinds: Counter[str] = Counter()
    for process in processes:
        for line in process.log().splitlines():
            if match := re.match(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): ", line):
                kinds[match[1]] += 1
            elif "lease renewal failed" in line:
                kinds["lease renewal failed"] += 1
            elif "Signal handler" in line and "raised" in line:
                kinds["completion handler raised"] += 1
    return kinds


def longest_stall(executions: list[Execution]) -> float:
    """The longest time, in seconds, between two consecutive starts of
    these executions while one of them was already requested and waiting
    to start (a gap with nothing requested is no stall)."""
    by_start = sorted((e for e in executions if e.started_at), key=lambda e: e.started_at)
    longest = 0.0
    for i, (before, after) in enumerate(itertools.pairwise(by_start)):
        if min(e.created for e in by_start[i + 1 :]) < before.started_at:
            longest = max(longest, (after.started_at - before.started_at).total_seconds())
    return longest


def serving_primaries(port: int) -> set[int]:
    """The ports of the primaries the node on ``port`` sees serving slots
    (CLUSTER NODES: flags ``master`` and not ``fail``, with slot ranges)."""
    nodes = redis.Redis(host=LOOPBACK, port=port, decode_responses=True, socket_timeout=2)
    try:
        lines = str(nodes.execute_command("CLUSTER", "NODES")).splitlines()
    except redis.RedisError:
        return set()
    finally:
        nodes.close()
    serving = set()
    for line in lines:
        fields = line.split()
        flags = fields[2].split(",")
        if "master" in flags and "fail" not in flags and len(fields) > 8:
            serving.add(int(fields[1].split("@")[0].rsplit(":", 1)[1]))
    return serving


@pytest.mark.parametrize(
    "private_redis_cluster",
    [RESTART_FULL_COVERAGE, RESTART_PARTIAL_COVERAGE, REPLICA],
    indirect=True,
    ids=["restart-full-coverage", "restart-partial-coverage", "replica"],
)
def test_a_primary_killed_mid_burst_loses_nothing_and_keeps_each_queues_order(
    private_redis_cluster: RunningCluster,
    stack: Stack,
    settings: Any,
    make_action: Any,
    worker_factory: Any,
    reaper_factory: Any,
    fast_leases: tuple[float, float],
    tmp_path: Path,
) -> None:
    cluster = private_redis_cluster
    partial = "--cluster-require-full-coverage" in cluster.config
    replicated = cluster.options.replicas > 0
    settings.ATTUNE_LEASE_SECONDS = LEASE_SECONDS
    _, interval = fast_leases
    log = str(tmp_path / "runs.log")
    victim, lost, kept = make_actions(make_action)
    actions = lost + kept
    survivors = [port for port in cluster.ports if port != victim]
    workers = [worker_factory(concurrency=2), worker_factory(concurrency=2)]
    reaper = reaper_factory()

    requested: list[str] = []
    failed: dict[str, int] = {}

    # How long each request whose gate step failed took to fail.
    failed_in: list[float] = []

    def request(index: int) -> str:
        action = actions[index % len(actions)]
        parameters = {"index": index, "log": log, "seconds": RUN_SECONDS}
        began = time.monotonic()
        execution = request_execution(action.ref, parameters)
        requested.append(str(execution.pk))
        if execution.status == S.REQUESTED:
            failed_in.append(time.monotonic() - began)
            # Committed before its gate step, which failed: it stays
            # `requested`, for the reaper to admit once the gate answers.
            stranded = Execution.objects.get(pk=execution.pk)
            assert (stranded.status, stranded.queue_seq) == (S.REQUESTED, None)
            failed[str(stranded.pk)] = index
        return requested[-1]

    for index in range(BEFORE_KILL):
        request(index)
    wait_until(
        lambda: Execution.objects.filter(pk__in=requested, status=S.COMPLETED).count() >= 30,
        timeout=60,
        message="30 runs done before the kill",
    )
    waiting_at_kill = {
        str(pk): seq
        for pk, seq in Execution.objects.filter(action__in=lost, status=S.QUEUED).values_list(
            "pk", "queue_seq"
        )
    }
    in_flight_at_kill = Execution.objects.filter(action__in=lost, status__in=[S.SCHEDULED, S.RUNNING]).count()
    killed_at = datetime.now(tz=UTC)
    cluster.kill(victim)
    killed = time.monotonic()

    def node_back() -> bool:
        """Whether the killed primary's slots are served again: by a
        promoted replica, or (without one) never until it is restarted."""
        if replicated:
            serving = serving_primaries(survivors[0])
            return len(serving) == CLUSTER_PRIMARIES and victim not in serving
        return time.monotonic() - killed >= OUTAGE_SECONDS

    # Requests go on while the node is down, one every few tens of ms.
    cluster_failed_after: float | None = None
    index = BEFORE_KILL
    during: list[str] = []
    while not node_back():
        assert time.monotonic() - killed < 30, "no replica took over"
        if index < BEFORE_KILL + DURING_OUTAGE:
            during.append(request(index))
            index += 1
        if cluster_failed_after is None and not cluster.ok(survivors[0]):
            cluster_failed_after = time.monotonic() - killed
        time.sleep(OUTAGE_SECONDS / DURING_OUTAGE / 2)
    if not replicated:
        cluster.restart(victim)
    back = time.monotonic()
    back_at = datetime.now(tz=UTC)
    live = [port for port in cluster.ports if not replicated or port != victim]
    wait_until(lambda: all(cluster.ok(port) for port in live), timeout=30, message="cluster_state:ok")
    ok_after = time.monotonic() - killed
    # A restarted node's actions are rebuilt by the reaper's next pass,
    # unless a run ending on one or a request gets there first (each
    # rebuilds what it finds missing); a promoted replica has them.
    wait_until(lambda: gate_answers(lost), timeout=30, interval=0.05, message="the lost actions rebuilt")
    rebuilt_after = time.monotonic() - back
    rebuilt_after_ok = time.monotonic() - killed - ok_after
    while index < TOTAL:
        request(index)
        index += 1

    executions = wait_all_terminal(requested, timeout=120)
    wait_gate_drained(actions, timeout=30)

    by_id = {str(e.pk): e for e in executions}
    # Every execution ran, and ran once.
    assert {e.status for e in executions} == {S.COMPLETED}, Counter(e.status for e in executions)
    runs = Counter(read_runs(log))
    assert sorted(runs) == list(range(TOTAL)), "an execution never ran"
    assert max(runs.values()) == 1, "an execution ran twice"
    for action in actions:
        mine = [e for e in executions if e.action_id == action.pk]
        assert max_concurrency(mine) <= action.concurrency_limit, action.ref
        # Granted in queue order: what waited on the lost node was put back
        # at its place, and what was admitted late went behind.
        grants = [e.grant_seq for e in in_request_order(mine)]
        assert grants == sorted(grants) and len(set(grants)) == len(grants), action.ref
        # Requests whose gate step failed were admitted in request order.
        late = [e for e in in_request_order(mine) if str(e.pk) in failed]
        assert [failed[str(e.pk)] for e in late] == sorted(failed[str(e.pk)] for e in late), action.ref
    # What waited on the killed primary went back to its place in its queue.
    assert waiting_at_kill, "nothing waited on the killed primary"
    assert {pk: by_id[pk].queue_seq for pk in waiting_at_kill} == waiting_at_kill
    # Every request to a lost action during the outage failed its gate step
    # (its primary was away); none was lost. (One made as a replica took
    # over may have got through on redis-py's retry.)
    lost_ids = {a.pk for a in lost}
    to_lost = [pk for pk in during if by_id[pk].action_id in lost_ids]
    if replicated:
        assert any(pk in failed for pk in to_lost)
    else:
        assert all(pk in failed for pk in to_lost)
    kept_ids = {a.pk for a in kept}
    on_kept = [e for e in executions if e.action_id in kept_ids]
    if partial:
        # The other primaries served their slots throughout: their actions
        # kept starting runs while the node was down, and took requests.
        assert any(killed_at < e.started_at < back_at for e in on_kept)
        assert not any(pk in failed for pk in during if by_id[pk].action_id in kept_ids)
    rebuilt_by_reaper = sorted(
        {
            ref
            for listed in re.findall(r"rebuilt=\[([^]]+)\]", reaper.log())
            for ref in re.findall(r"'([^']+)'", listed)
        }
    )
    if replicated:
        # The replica took over with the queues: nothing to rebuild.
        assert not rebuilt_by_reaper
    # The reaper lived through the outage (requests of the surviving
    # primaries left stranded have nobody else to admit them).
    assert reaper.process.poll() is None, reaper.log()[-3000:]

    before = sorted(e.started_at for e in on_kept if e.started_at < killed_at)
    typical = statistics.median((b - a).total_seconds() for a, b in itertools.pairwise(before))
    errors = logged_errors(workers)
    freed_by_reaper = sum(int(n) for n in re.findall(r"freed=(\d+)", reaper.log()))
    print(
        f"\n[{'replica' if replicated else 'restart'}, {'partial' if partial else 'full'} coverage] "
        f"primary :{victim} killed holding "
        f"{len(lost)} of {len(actions)} actions (reaper lock on :{primary_port(lock_key('reaper'))})\n"
        f"  waiting on it at the kill: {len(waiting_at_kill)}, granted or running: {in_flight_at_kill}\n"
        f"  the other nodes said cluster_state:fail after: "
        f"{'never' if cluster_failed_after is None else f'{cluster_failed_after:.1f} s'} "
        f"(node timeout {CLUSTER_NODE_TIMEOUT_MS} ms)\n"
        f"  {'replica promoted' if replicated else 'node restarted'} {back - killed:.1f} s after "
        f"the kill; cluster_state:ok on every live node {ok_after:.1f} s after the kill\n"
        f"  lost actions answering {rebuilt_after:.1f} s after that, {rebuilt_after_ok:.1f} s after "
        f"cluster_state:ok (reaper interval {interval:.0f} s); the reaper rebuilt "
        f"{len(rebuilt_by_reaper)} of {len(lost)}\n"
        f"  requests made while it was down: {len(during)}; whose gate step failed: {len(failed)} "
        f"({sum(1 for pk in failed if by_id[pk].action_id in kept_ids)} of them on surviving primaries), "
        f"each failing in {statistics.median(failed_in) * 1000:.0f} ms (median), "
        f"{max(failed_in) * 1000:.0f} ms at most\n"
        f"  actions on surviving primaries: longest time without a start while one waited: "
        f"{longest_stall(on_kept):.2f} s of any, "
        f"{max(longest_stall([e for e in on_kept if e.action_id == a.pk]) for a in kept):.2f} s of one "
        f"(median gap between starts before the kill {typical * 1000:.0f} ms); on the killed primary: "
        f"{longest_stall([e for e in executions if e.action_id in lost_ids]):.2f} s\n"
        f"  worker errors logged: {dict(errors)}\n"
        f"  reaper errors logged: {dict(logged_errors([reaper]))}; slots whose lost release the reaper made: "
        f"{freed_by_reaper}"
    )
