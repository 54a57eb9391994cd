"""Whether Attune's costs stay flat as queues, tables and runs grow: each
figure measured small and large, with the ratio.

    python -m bench.scale [--waiting 100000] [--admissions 2000] [--actions 1000]
                          [--terminal 1000000] [--executions 100000] [--concurrency 2]
                          [--parts admission,api,rss]

- admission: requests/s through request_executions in batches of 100 (no
  worker, limit 1) into an empty queue, then with --waiting executions
  already waiting; and the Redis memory each waiting execution takes.
- api: the queue-stats API, /metrics and the dashboard's JSON, timed with
  --actions actions and an empty executions table, then with --terminal
  ended executions in it.
- rss: the resident memory of a worker (main process and pool) sampled
  every 10% of --executions no-ops run through the gate.

The goal for each ratio is 1.2 or less; Redis memory, 200 bytes or less
per waiting execution.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from typing import TYPE_CHECKING

from bench import common, runs

if TYPE_CHECKING:
    from executions.models import Action

PARTS = ("admission", "api", "rss")
RATIO_GOAL = 1.2
BYTES_PER_WAITING_GOAL = 200
ADMISSION_BATCH = 100
ADMISSION_ROUNDS = 5
# request_executions takes at most this many at once.
FILL_BATCH = 1000
BENCH_PACK = "benchscale"
# What a history of ended executions is spread over, so that the dashboard's
# last-minute window holds as few of them as it would in a real table.
HISTORY_DAYS = 30
# One in this many ended executions failed, the others completed.
FAILED_EVERY = 50
WARM_UP_REQUESTS = 2
MIB = 1024 * 1024


def ratio_line(name: str, small: float, large: float, unit: str, *, higher_is_better: bool) -> str:
    """``large`` against ``small`` as a cost ratio: above 1 means the larger
    state is slower, whichever way the unit reads."""
    ratio = small / large if higher_is_better else large / small
    verdict = "within" if ratio <= RATIO_GOAL else "OVER"
    return f"| {name} | {small:.2f} {unit} | {large:.2f} {unit} | {ratio:.2f} ({verdict} {RATIO_GOAL}x) |"


def vacuum() -> None:
    """Dead rows of an earlier part would otherwise weigh on the next one."""
    from django.db import connection

    from executions.models import Execution

    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Execution._meta.db_table}")


def reset() -> None:
    from executions.models import Action, Pack

    common.reset_state()
    Action.objects.filter(pack__ref=BENCH_PACK).delete()
    Pack.objects.filter(ref=BENCH_PACK).delete()
    vacuum()


# --- admission, and Redis memory per waiting execution -----------------------------------


def redis_used_memory() -> int:
    """INFO used_memory, summed over a cluster's primaries (one of them
    holds the action's queue)."""
    from queues.redis_client import get_redis, primaries

    return sum(int(node.info("memory")["used_memory"]) for node in primaries(get_redis()))


def queue_key_bytes(action_id: int) -> tuple[int, int]:
    """Bytes of every Redis key of the action's queue (counted exactly, not
    sampled), and how many executions wait in it."""
    from queues.keys import QueueRef
    from queues.redis_client import get_redis

    client = get_redis()
    queue = QueueRef(action_id)
    total = sum(client.memory_usage(key, samples=0) or 0 for key in queue.all_keys())
    return total, int(client.zcard(queue.waiting))


def run_admission(waiting: int, admissions: int) -> list[str]:
    from queues.reconcile import reconcile_action

    reset()
    action = runs.configure_noop(1, waiting + (ADMISSION_ROUNDS + 1) * admissions + FILL_BATCH)
    # Warm this process's code paths and connections, then start again from
    # an empty queue whose Redis state exists, as a used queue's does.
    runs.request(ADMISSION_BATCH, ADMISSION_BATCH)
    # Each figure is the median of a few rounds: one round is half a second,
    # short enough for a stray checkpoint or autovacuum to halve it.
    empty_rounds = []
    for _ in range(ADMISSION_ROUNDS):
        runs.clear_executions()
        reconcile_action(action, admit_requested=False)
        vacuum()
        empty_rounds.append(admissions / runs.request(admissions, ADMISSION_BATCH))
    empty = statistics.median(empty_rounds)
    runs.clear_executions()
    reconcile_action(action, admit_requested=False)
    memory_before = redis_used_memory()
    keys_before, waiting_before = queue_key_bytes(action.pk)
    fill_seconds = runs.request(waiting, FILL_BATCH)
    # The fill leaves a dead version of every row it recorded; autovacuum
    # would clean them up in the middle of the timing below, as it does a
    # little after any burst. Time the steady state instead.
    vacuum()
    memory_after = redis_used_memory()
    keys_after, waiting_after = queue_key_bytes(action.pk)
    full_rounds = []
    for _ in range(ADMISSION_ROUNDS):
        full_rounds.append(admissions / runs.request(admissions, ADMISSION_BATCH))
        vacuum()
    full = statistics.median(full_rounds)
    added = waiting_after - waiting_before
    per_waiting_info = (memory_after - memory_before) / added
    per_waiting_keys = keys_after / waiting_after
    per_waiting_added = (keys_after - keys_before) / added
    verdict = "within" if per_waiting_keys <= BYTES_PER_WAITING_GOAL else "OVER"
    return [
        f"## Admission: {admissions} requests in batches of {ADMISSION_BATCH}, no worker, limit 1 "
        f"(median of {ADMISSION_ROUNDS} rounds)",
        "",
        "| figure | empty queue | large | large / empty |",
        "| --- | ---: | ---: | ---: |",
        ratio_line(
            f"requests/s (large: {waiting_before + added} waiting)", empty, full, "/s", higher_is_better=True
        ),
        "",
        f"Filled {added} waiting executions in {fill_seconds:.1f} s ({added / fill_seconds:.0f} requests/s "
        f"in batches of {FILL_BATCH}).",
        "",
        f"## Redis memory per waiting execution ({waiting_after} waiting)",
        "",
        f"- MEMORY USAGE of the queue's keys: {keys_after} bytes, {per_waiting_keys:.0f} bytes per waiting "
        f"execution ({verdict} {BYTES_PER_WAITING_GOAL}); the {added} added took "
        f"{per_waiting_added:.0f} bytes each",
        f"- INFO used_memory grew {memory_after - memory_before} bytes, {per_waiting_info:.0f} bytes per "
        "execution added (the whole server, every primary of a cluster: anything else using it meanwhile "
        "counts too)",
    ]


# --- the read APIs against a large executions table ---------------------------------------


ENDPOINTS = (
    ("queue-stats API", "/api/v1/queue-stats"),
    ("/metrics", "/metrics"),
    ("dashboard JSON", "/dashboard/api/queues"),
)


def create_actions(count: int) -> list[Action]:
    from executions.models import Action, Pack, Runner

    pack = Pack.objects.create(ref=BENCH_PACK, label="Scale benchmark")
    names = [f"a{index:05d}" for index in range(count)]
    # bulk_create skips Action.save(), which is what sets the ref.
    Action.objects.bulk_create(
        Action(
            pack=pack,
            name=name,
            ref=f"{BENCH_PACK}.{name}",
            runner=Runner.PYTHON,
            entrypoint="workers.core_actions.noop",
            parameters_schema={"type": "object", "additionalProperties": False},
            concurrency_limit=2,
        )
        for name in names
    )
    return list(Action.objects.filter(pack=pack).order_by("pk"))


def queue_state_as_the_app_keeps_it() -> int:
    """Rebuild every queue's Redis state from the table, as a fresh Redis
    would get it, and persist the counters as the workers' flusher does.
    Returns the number of queue_stats rows."""
    from queues.models import QueueStats
    from queues.reconcile import reconcile_all
    from queues.stats import flush_once

    common.flush_gate()
    reconcile_all(admit_requested=False)
    flush_once()
    return QueueStats.objects.count()


def insert_terminal(count: int) -> float:
    """``count`` ended executions spread evenly over the bench pack's
    actions and over the last HISTORY_DAYS days, in one statement. Returns
    its seconds."""
    from django.db import connection

    from executions.models import Action, Execution, Pack

    table = Execution._meta.db_table
    pack_id = Pack.objects.get(ref=BENCH_PACK).pk
    action_count = Action.objects.filter(pack_id=pack_id).count()
    # Each action's executions get queue and grant seqs 1, 2, 3... in time order.
    sql = f"""
        INSERT INTO {table} (
            id, action_id, action_ref, parameters, status, result, error, created, enqueued_at,
            scheduled_at, started_at, completed_at, updated, worker, celery_task_id, queue_seq,
            grant_seq, queue_group
        )
        SELECT s.id, a.id, a.ref, '{{}}'::jsonb, s.status,
               CASE WHEN s.status = 'completed' THEN 'null'::jsonb END,
               CASE WHEN s.status = 'failed' THEN 'RuntimeError: failed on purpose' ELSE '' END,
               s.ended - interval '40 milliseconds', s.ended - interval '39 milliseconds',
               s.ended - interval '20 milliseconds', s.ended - interval '10 milliseconds',
               s.ended, s.ended, 'celery@bench', s.id::text, s.i / %s + 1, s.i / %s + 1, 'default'
        FROM (
            SELECT i, gen_random_uuid() AS id,
                   now() - (%s - i) * (interval '{HISTORY_DAYS} days' / %s) AS ended,
                   CASE WHEN i %% {FAILED_EVERY} = 0 THEN 'failed' ELSE 'completed' END AS status
            FROM generate_series(0, %s - 1) AS i
        ) AS s
        JOIN (
            SELECT id, ref, row_number() OVER (ORDER BY id) - 1 AS k
            FROM executions_action WHERE pack_id = %s
        ) AS a ON a.k = s.i %% %s
    """
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql, [action_count, action_count, count, count, count, pack_id, action_count])
    seconds = time.perf_counter() - started
    vacuum()
    return seconds


def time_endpoints(samples: int) -> dict[str, float]:
    """Median milliseconds of each endpoint, as a logged-in staff user."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-staff").first()
    if user is None:
        user = user_model.objects.create_superuser("bench-staff", "bench@example.com", None)
    client = Client()
    client.force_login(user)
    medians: dict[str, float] = {}
    for name, url in ENDPOINTS:
        for _ in range(WARM_UP_REQUESTS):
            response = client.get(url)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url} answered {response.status_code}")
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            client.get(url)
            times.append(time.perf_counter() - started)
        medians[name] = statistics.median(times) * 1000
    return medians


def run_api(actions: int, terminal: int, samples: int) -> list[str]:
    reset()
    create_actions(actions)
    rows_empty = queue_state_as_the_app_keeps_it()
    empty = time_endpoints(samples)
    insert_seconds = insert_terminal(terminal)
    rows_full = queue_state_as_the_app_keeps_it()
    full = time_endpoints(samples)
    lines = [
        f"## Read APIs: {actions} actions, median of {samples} requests (staff session)",
        "",
        f"| endpoint | empty executions table | {terminal} ended executions | large / empty |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        ratio_line(name, empty[name], full[name], "ms", higher_is_better=False) for name, _ in ENDPOINTS
    ]
    lines += [
        "",
        f"Inserted {terminal} ended executions (1 in {FAILED_EVERY} failed, over the last {HISTORY_DAYS} "
        f"days) in {insert_seconds:.1f} s; queue_stats rows: {rows_empty} before, {rows_full} after "
        "(Redis rebuilt from the table, then flushed into queue_stats, before each timing).",
    ]
    return lines


# --- worker memory over a long run -------------------------------------------------------


def rss_sample(pid: int) -> tuple[int, list[tuple[int, int]]]:
    """Resident bytes of the worker's main process, and (pid, bytes) of each
    of its pool processes."""
    import psutil

    main = psutil.Process(pid)
    children = []
    for child in main.children(recursive=True):
        try:
            children.append((child.pid, child.memory_info().rss))
        except psutil.NoSuchProcess:
            continue
    return main.memory_info().rss, sorted(children)


def run_rss(executions: int, concurrency: int) -> list[str]:
    reset()
    runs.configure_noop(concurrency, executions)
    step = max(1, executions // 10)
    poller = runs.Poller()
    samples: list[tuple[int, int, list[tuple[int, int]]]] = []
    done = 0
    with common.celery_worker(concurrency) as worker:
        while done < executions:
            chunk = min(step, executions - done)
            runs.request(chunk, ADMISSION_BATCH)
            done += chunk
            # The table grows to every execution of the run: count less often.
            poller.wait(done, interval=0.2)
            main, children = rss_sample(worker.pid)
            samples.append((done, main, children))
    lines = [
        f"## Worker memory: {executions} no-ops through the gate, limit {concurrency}, "
        f"`celery worker -c {concurrency}`",
        "",
        "| executions done | main process (MiB) | pool processes (MiB each) | total (MiB) |",
        "| ---: | ---: | --- | ---: |",
    ]
    for done, main, children in samples:
        each = ", ".join(f"{rss / MIB:.1f}" for _, rss in children)
        total = main + sum(rss for _, rss in children)
        lines.append(f"| {done} | {main / MIB:.1f} | {each} | {total / MIB:.1f} |")
    first, last = samples[0], samples[-1]
    first_total = first[1] + sum(rss for _, rss in first[2])
    last_total = last[1] + sum(rss for _, rss in last[2])
    same_pool = [pid for pid, _ in first[2]] == [pid for pid, _ in last[2]]
    lines += [
        "",
        f"From the first sample (after {first[0]} executions, the warm-up) to the last: "
        f"{(last_total - first_total) / MIB:+.1f} MiB ({(last_total / first_total - 1) * 100:+.1f}%); "
        + ("the same pool processes throughout." if same_pool else "the pool processes were replaced."),
    ]
    return lines


# --- main -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=100_000, help="waiting executions (default 100000)")
    parser.add_argument("--admissions", type=int, default=2000, help="requests timed (default 2000)")
    parser.add_argument("--actions", type=int, default=1000, help="actions for the read APIs (default 1000)")
    parser.add_argument(
        "--terminal", type=int, default=1_000_000, help="ended executions in the table (default 1000000)"
    )
    parser.add_argument("--requests", type=int, default=20, help="requests per endpoint timing (default 20)")
    parser.add_argument(
        "--executions", type=int, default=100_000, help="executions of the worker memory run (default 100000)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, any of: {', '.join(PARTS)} (default: all)"
    )
    args = parser.parse_args()
    selected = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts: {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    # The test client builds the middleware, and WhiteNoise notes that
    # collectstatic never ran; the API timings do not serve static files.
    warnings.filterwarnings("ignore", message="No directory at", category=UserWarning)
    # A database of its own: this one holds a million rows at times.
    os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/attune_bench_scale")
    common.setup_django()
    print("# Scale: costs against the size of queues, tables and runs")
    for line in common.machine_summary():
        print(line)
    print()
    if "admission" in selected:
        for line in run_admission(args.waiting, args.admissions):
            print(line, flush=True)
        print()
    if "api" in selected:
        for line in run_api(args.actions, args.terminal, args.requests):
            print(line, flush=True)
        print()
    if "rss" in selected:
        for line in run_rss(args.executions, args.concurrency):
            print(line, flush=True)
    reset()


if __name__ == "__main__":
    main()
