"""How far the gate's Redis goes: scripts per second on the hot path, and
memory per waiting execution, on one standalone Redis and on a 3-primary
Redis Cluster, the same load on each.

    python -m bench.gate_ops [--targets standalone,cluster] [--processes 4] [--actions 12]
                             [--waiting 100000] [--batch 100] [--ops 50000] [--redis-url URL]

Each target is a fresh server (or cluster) on free loopback ports, no
persistence, started the way the tests start them (tests/local_servers.py).
`--redis-url` measures that Redis or cluster instead, and flushes it (every
primary) before and after.

--processes client processes, each with its own client as the app makes it
(queues.redis_client, queues.gate), share --actions actions at limit 2,
spread evenly over the primaries (each process's actions on every primary).
Three phases, each timed from the moment every process starts to the end of
the last one:

- admit: --waiting executions admitted in batches of --batch (admit_v6),
  all but the first two of each action left waiting; Redis memory (INFO
  used_memory, per primary) is read before and after, and divided by the
  executions left waiting on that primary;
- renew: --ops lease renewals of one running execution each (renew_v1), as
  a worker's lease keeper sends them;
- release: --ops releases of a run that ended (release_v4), each freeing
  its slot and handing it to the head of the queue.

No Django database is used. Redis CPU (INFO used_cpu_user + used_cpu_sys)
shows whether Redis or the client processes were the bound: calls per
Redis CPU-second is what one Redis core would sustain for that script if
clients were not the limit.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import queue as queue_module
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

from redis.cluster import RedisCluster

from bench.common import DEFAULTS, ROOT, cpu_model

TARGETS = ("standalone", "cluster")
PHASES = ("admit", "renew", "release")
LIMIT = 2
# Big enough that no batch is refused for a full queue.
MAX_WAITING = 10**9
LEASE_MS = 30_000
# A primary busier than this share of a core is taken to be the bound.
BUSY = 0.9
# A phase that takes longer than this has gone wrong; say so rather than hang.
PHASE_TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Share:
    """What one client process does in each phase."""

    actions: list[int]
    batches: int
    batch: int
    renews: int
    releases: int


@dataclass(frozen=True)
class Done:
    """One process's part of one phase: monotonic start and end, the script
    calls it made, and the executions they moved."""

    phase: str
    start: float
    end: float
    calls: int
    executions: int


@dataclass(frozen=True)
class NodeStats:
    cpu_seconds: float
    used_memory: int
    scripts: int


@dataclass(frozen=True)
class PhaseFigures:
    phase: str
    calls: int
    executions: int
    seconds: float
    redis_cpu_seconds: float
    busiest_cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else float("nan")

    @property
    def cpu_us_per_call(self) -> float:
        return self.redis_cpu_seconds / self.calls * 1e6 if self.calls else float("nan")


# --- the plan: which actions, and who does what ---------------------------------------------


def spread_actions(count: int, primary_of: Callable[[int], str], primaries: list[str]) -> list[int]:
    """``count`` action ids (from 1 up) spread as evenly as the count allows
    over ``primaries``, interleaved (one on each primary in turn), so that
    every slice ``ids[i::n]`` also covers the primaries."""
    wanted = {primary: count // len(primaries) for primary in primaries}
    for primary in primaries[: count % len(primaries)]:
        wanted[primary] += 1
    chosen: dict[str, list[int]] = {primary: [] for primary in primaries}
    action_id = 0
    while any(len(chosen[primary]) < wanted[primary] for primary in primaries):
        action_id += 1
        primary = primary_of(action_id)
        if len(chosen[primary]) < wanted[primary]:
            chosen[primary].append(action_id)
    ordered: list[int] = []
    for index in range(max(wanted.values())):
        ordered.extend(chosen[primary][index] for primary in primaries if index < len(chosen[primary]))
    return ordered


def split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` as evenly as integers go."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def shares(actions: list[int], processes: int, waiting: int, batch: int, ops: int) -> list[Share]:
    batches = split(-(-waiting // batch), processes)
    renews, releases = split(ops, processes), split(ops, processes)
    return [
        Share(actions[index::processes], batches[index], batch, renews[index], releases[index])
        for index in range(processes)
    ]


# --- one client process -----------------------------------------------------------------------


class Client:
    """One process's gate client and what it knows of its queues."""

    def __init__(self, url: str, share: Share) -> None:
        from queues.gate import Gate
        from queues.keys import QueueRef
        from queues.redis_client import connect

        self.gate = Gate(connect(url))
        self.share = share
        self.queues = {action_id: QueueRef(action_id) for action_id in share.actions}
        # Each action's running executions, oldest first, and how many wait.
        self.active: dict[int, deque[str]] = {action_id: deque() for action_id in share.actions}
        self.waiting = dict.fromkeys(share.actions, 0)

    def prepare(self, phase: str) -> Callable[[], tuple[int, int]]:
        """The phase's work, its inputs made in advance so that only the
        script calls are timed; returns (calls, executions moved)."""
        if phase == "admit":
            # Ids as the app's: UUIDs, 36 characters.
            batches = [
                (
                    self.share.actions[index % len(self.share.actions)],
                    [str(uuid.uuid4()) for _ in range(self.share.batch)],
                )
                for index in range(self.share.batches)
            ]
            return lambda: self.admit(batches)
        if phase == "renew":
            return lambda: self.renew(self.share.renews)
        # No more releases than there are heads to hand the slots to.
        return lambda: self.release(min(self.share.releases, sum(self.waiting.values())))

    def admit(self, batches: list[tuple[int, list[str]]]) -> tuple[int, int]:
        admitted = 0
        for action_id, ids in batches:
            result = self.gate.admit(
                self.queues[action_id], ids, limit=LIMIT, max_waiting=MAX_WAITING, lease_ms=LEASE_MS
            )
            if result.outcome != "admitted":
                raise RuntimeError(f"admit of action {action_id}: {result.outcome}")
            for admission in result.admissions:
                if admission.outcome == "granted":
                    self.active[action_id].append(admission.execution_id)
                elif admission.outcome == "queued":
                    self.waiting[action_id] += 1
            admitted += len(ids)
        return len(batches), admitted

    def renew(self, calls: int) -> tuple[int, int]:
        running = [
            (self.queues[a], execution_id) for a in self.share.actions for execution_id in self.active[a]
        ]
        for index in range(calls):
            queue, execution_id = running[index % len(running)]
            # Its reply counts changed deadlines, 0 for a renewal in the
            # same millisecond as the last: every call renews one lease.
            self.gate.renew(queue, [execution_id], lease_ms=LEASE_MS)
        return calls, calls

    def release(self, calls: int) -> tuple[int, int]:
        from queues.gate import KEEP_LIMIT

        actions = [action_id for action_id in self.share.actions if self.waiting[action_id]]
        handed_off = made = 0
        while made < calls and actions:
            action_id = actions[made % len(actions)]
            result = self.gate.release(
                self.queues[action_id],
                self.active[action_id].popleft(),
                limit=KEEP_LIMIT,
                lease_ms=LEASE_MS,
                terminal_status="completed",
            )
            made += 1
            self.active[action_id].extend(grant.execution_id for grant in result.grants)
            handed_off += len(result.grants)
            self.waiting[action_id] -= len(result.grants)
            if not self.waiting[action_id]:
                actions.remove(action_id)
        return made, handed_off


def client_process(url: str, share: Share, barrier: Barrier, results: Any) -> None:
    try:
        client = Client(url, share)
        client.gate.redis.ping()
        for phase in PHASES:
            work = client.prepare(phase)
            barrier.wait(timeout=PHASE_TIMEOUT_SECONDS)
            start = time.monotonic()
            calls, executions = work()
            results.put(Done(phase, start, time.monotonic(), calls, executions))
    except BaseException:
        results.put(traceback.format_exc())
        barrier.abort()


# --- the measuring process -------------------------------------------------------------------


def node_stats(node: Any) -> NodeStats:
    info = node.info("cpu")
    memory = node.info("memory")
    commands = node.info("commandstats")
    scripts = sum(int(commands.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))
    return NodeStats(
        float(info["used_cpu_user"]) + float(info["used_cpu_sys"]), int(memory["used_memory"]), scripts
    )


def node_name(node: Any) -> str:
    kwargs = node.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def flush(client: Any) -> None:
    from queues.redis_client import primaries

    for node in primaries(client):
        node.flushdb()


def prepare_queues(client: Any, nodes: list[Any], actions: list[int]) -> None:
    """Empty queues at limit 2, as reconcile builds them for a new action,
    and every script loaded on every primary, so no call is its first."""
    from queues.gate import LUA_DIR, Gate, RestoreState, script_text
    from queues.keys import QueueRef

    gate = Gate(client)
    for action_id in actions:
        gate.restore(QueueRef(action_id), RestoreState(LIMIT, 0, 0, 0, 0, 0, [], []), lease_ms=LEASE_MS)
    for node in nodes:
        for path in sorted(LUA_DIR.glob("*.lua")):
            node.script_load(script_text(path))


@dataclass(frozen=True)
class NodeFigures:
    name: str
    actions: int
    waiting: int
    # INFO used_memory after the admit phase less before it.
    memory_growth: int
    # EVALSHA and EVAL calls over every phase.
    scripts: int


@dataclass(frozen=True)
class TargetResult:
    name: str
    description: str
    phases: list[PhaseFigures]
    nodes: list[NodeFigures]


def measure(name: str, description: str | None, url: str, args: argparse.Namespace) -> TargetResult:
    """Run the three phases on the Redis or cluster at ``url``; flushes it
    before and after."""
    from queues.keys import QueueRef
    from queues.redis_client import connect, primaries

    client = connect(url)
    if isinstance(client, RedisCluster):
        by_name = {f"{node.host}:{node.port}": node for node in client.get_primaries()}
        names = list(by_name)
        nodes = [client.get_redis_connection(by_name[name]) for name in names]

        def primary_of(action_id: int) -> str:
            node = client.nodes_manager.get_node_from_slot(client.keyslot(QueueRef(action_id).meta))
            return f"{node.host}:{node.port}"

    else:
        nodes = primaries(client)
        names = [node_name(nodes[0])]

        def primary_of(action_id: int) -> str:
            return names[0]

    kind = f"Redis Cluster of {len(names)} primaries" if len(names) > 1 else "standalone Redis"
    version = nodes[0].info("server")["redis_version"]
    description = f"{description or kind}, Redis {version}"
    actions = spread_actions(args.actions, primary_of, names)
    flush(client)
    prepare_queues(client, nodes, actions)
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(args.processes + 1)
    results = context.Queue()
    children = [
        context.Process(target=client_process, args=(url, share, barrier, results), daemon=True)
        for share in shares(actions, args.processes, args.waiting, args.batch, args.ops)
    ]
    for child in children:
        child.start()
    figures: list[PhaseFigures] = []
    first = after_admit = [node_stats(node) for node in nodes]
    waiting_on = dict.fromkeys(names, 0)
    try:
        for phase in PHASES:
            before = [node_stats(node) for node in nodes]
            barrier.wait(timeout=PHASE_TIMEOUT_SECONDS)
            done: list[Done] = []
            while len(done) < args.processes:
                got = results.get(timeout=PHASE_TIMEOUT_SECONDS)
                if isinstance(got, str):
                    raise RuntimeError(f"a client process failed:\n{got}")
                done.append(got)
            after = [node_stats(node) for node in nodes]
            if phase == "admit":
                # Read before the next phase starts: the releases take from the queues.
                after_admit = after
                for action_id in actions:
                    waiting_on[primary_of(action_id)] += int(client.zcard(QueueRef(action_id).waiting))
            cpu = [b.cpu_seconds - a.cpu_seconds for a, b in zip(before, after, strict=True)]
            figures.append(
                PhaseFigures(
                    phase,
                    calls=sum(part.calls for part in done),
                    executions=sum(part.executions for part in done),
                    seconds=max(part.end for part in done) - min(part.start for part in done),
                    redis_cpu_seconds=sum(cpu),
                    busiest_cpu_seconds=max(cpu),
                )
            )
    except (threading.BrokenBarrierError, queue_module.Empty) as error:
        failure = next((got for got in drain(results) if isinstance(got, str)), None)
        raise RuntimeError(f"the client processes did not finish: {failure or repr(error)}") from error
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.terminate()
    last = [node_stats(node) for node in nodes]
    flush(client)
    actions_on = dict.fromkeys(names, 0)
    for action_id in actions:
        actions_on[primary_of(action_id)] += 1
    rows = [
        NodeFigures(
            name,
            actions_on[name],
            waiting_on[name],
            after_admit[index].used_memory - first[index].used_memory,
            last[index].scripts - first[index].scripts,
        )
        for index, name in enumerate(names)
    ]
    return TargetResult(name, description, figures, rows)


def drain(results: Any) -> Iterator[Any]:
    while True:
        try:
            yield results.get(timeout=1)
        except queue_module.Empty:
            return


# --- targets ------------------------------------------------------------------------------------


@contextmanager
def target(name: str) -> Iterator[tuple[str, str]]:
    """(description, REDIS_URL) of a fresh target, stopped at the end."""
    from tests import local_servers

    if name == "standalone":
        with local_servers.redis_server() as server:
            yield f"one standalone Redis ({local_servers.LOOPBACK}:{server.port}, no persistence)", server.url
    else:
        with local_servers.redis_cluster() as cluster:
            count = len(cluster.ports)
            yield f"Redis Cluster of {count} primaries, no replicas, no persistence", cluster.url


# --- output -------------------------------------------------------------------------------------


SCRIPT_NAMES = {
    "admit": "admit_v6, a batch of {batch}",
    "renew": "renew_v1, one lease",
    "release": "release_v4, freeing a slot and handing it on",
}
EXECUTIONS = {"admit": "admitted", "renew": "leases", "release": "handed off"}


def table(result: TargetResult, args: argparse.Namespace, cores: int) -> list[str]:
    lines = [
        f"## {result.description}",
        "",
        "| script | calls | executions | seconds | calls/s | executions/s | Redis CPU per call (us) "
        "| calls per Redis CPU-second | busiest primary's CPU, % of a core |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for figure in result.phases:
        name = SCRIPT_NAMES[figure.phase].format(batch=args.batch)
        per_cpu_second = figure.calls / figure.redis_cpu_seconds if figure.redis_cpu_seconds else float("nan")
        lines.append(
            f"| {name} | {figure.calls} | {figure.executions} ({EXECUTIONS[figure.phase]}) "
            f"| {figure.seconds:.2f} | {figure.rate:.0f} | {figure.executions / figure.seconds:.0f} "
            f"| {figure.cpu_us_per_call:.1f} | {per_cpu_second:.0f} "
            f"| {figure.busiest_cpu_seconds / figure.seconds * 100:.0f} |"
        )
    lines += [
        "",
        "| primary | actions | waiting after admit | used_memory growth over admit (bytes) "
        "| bytes per waiting execution | scripts run (all phases) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for node in result.nodes:
        per_waiting = f"{node.memory_growth / node.waiting:.0f}" if node.waiting else "—"
        lines.append(
            f"| {node.name} | {node.actions} | {node.waiting} | {node.memory_growth} | {per_waiting} "
            f"| {node.scripts} |"
        )
    admit = next(figure for figure in result.phases if figure.phase == "admit")
    release = next(figure for figure in result.phases if figure.phase == "release")
    per_execution_us = admit.cpu_us_per_call / args.batch + release.cpu_us_per_call
    primaries = len(result.nodes)
    lines += [
        "",
        f"At a limit, an execution costs the gate one release and 1/{args.batch} of an admission: "
        f"{per_execution_us:.1f} us of Redis CPU, so one Redis core gates at most "
        f"~{1e6 / per_execution_us:.0f} executions/s"
        + (f" (x{primaries} primaries if the actions' load is spread evenly)" if primaries > 1 else "")
        + ". Lease renewals (one per running execution every lease / 3) add little to that.",
    ]
    client_bound = [
        figure.phase for figure in result.phases if figure.busiest_cpu_seconds / figure.seconds < BUSY
    ]
    if client_bound:
        lines.append(
            f"In {', '.join(client_bound)} no primary was busy {BUSY:.0%} of the time: the "
            f"{args.processes} client processes, sharing {cores} cores with Redis, were the bound of "
            "calls/s there, not Redis."
        )
    return lines


def comparison(results: list[TargetResult]) -> list[str]:
    if len(results) < 2:
        return []
    base, other = results[0], results[1]
    parts = [
        f"{SCRIPT_NAMES[a.phase].split(',')[0]} x{b.rate / a.rate:.2f}"
        for a, b in zip(base.phases, other.phases, strict=True)
    ]
    return [f"calls/s, {other.name} against {base.name}: {', '.join(parts)}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--targets",
        default=",".join(TARGETS),
        help=f"comma-separated, any of: {', '.join(TARGETS)} (default: both, fresh servers)",
    )
    parser.add_argument(
        "--redis-url",
        help="measure this Redis (redis://...) or cluster (redis+cluster://...) instead; it is flushed",
    )
    parser.add_argument("--processes", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--actions", type=int, default=12, help="actions, at limit 2 (default 12)")
    parser.add_argument(
        "--waiting",
        type=int,
        default=100_000,
        help="executions admitted, nearly all left waiting (default 100000)",
    )
    parser.add_argument("--batch", type=int, default=100, help="executions per admission (default 100)")
    parser.add_argument(
        "--ops", type=int, default=50_000, help="renew and release calls each (default 50000)"
    )
    args = parser.parse_args()
    targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = sorted(set(targets) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets: {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if args.actions < args.processes:
        parser.error("--actions must be at least --processes: each process has actions of its own")
    if min(args.processes, args.batch, args.waiting, args.ops) < 1:
        parser.error("--processes, --batch, --waiting and --ops must be at least 1")
    if -(-args.waiting // args.batch) < 2 * args.actions:
        # Fewer, and some actions would hold no running execution to renew
        # and leave none waiting to hand a slot to.
        parser.error("--waiting / --batch must be at least 2 x --actions: two batches for every action")

    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    sys.path.insert(0, str(ROOT))
    import django
    import redis

    django.setup()
    from tests import local_servers

    cores = os.cpu_count() or 1
    print("# Gate scripts: what the gate's Redis sustains")
    print(
        f"- CPU: {cpu_model()}, {cores} cores; Python {platform.python_version()}, "
        f"redis-py {redis.__version__}"
    )
    print(
        f"- {args.processes} client processes (queues.gate through queues.redis_client, one client each) "
        f"sharing {args.actions} actions at limit {LIMIT}, spread evenly over the primaries; "
        f"{args.waiting} executions admitted in batches of {args.batch}, then {args.ops} renewals and "
        f"{args.ops} releases",
        flush=True,
    )
    results: list[TargetResult] = []
    try:
        if args.redis_url:
            results.append(measure("--redis-url", None, args.redis_url, args))
        else:
            for name in targets:
                print(f"  measuring {name} ...", file=sys.stderr, flush=True)
                with target(name) as (description, url):
                    results.append(measure(name, description, url, args))
    except (local_servers.Unavailable, local_servers.StartFailed) as error:
        parser.exit(2, f"cannot start the servers: {error}\n")
    for result in results:
        print()
        for line in table(result, args, cores):
            print(line)
    lines = comparison(results)
    if lines:
        print()
        print("\n".join(lines))


if __name__ == "__main__":
    main()
