"""What the FIFO gate costs against the ways teams run Celery without it:
the same no-op, the same worker settings, one run, one table.

    python -m bench.throughput [--count 10000] [--concurrency 2] [--batch 100] [--rows plain,teams,...]

One `celery worker -c <concurrency>` runs every row:

- plain: a no-op task that only counts itself in Redis, no database.
- teams: the no-op plus the row a Celery user keeps per task, as
  django-celery-results does: the requester INSERTs it (autocommit) then
  sends the task; the task UPDATEs it at start and at end.
- semaphore: the Celery idiom for a limit, a Redis counter as semaphore,
  at limit 2 and at limit 1 (--semaphore-limits): at the worker's
  concurrency it is never full, below it it binds; a task that finds it
  full retries after a countdown.
- gate: Attune's path, core.noop at limit <concurrency>, at limit 1 and
  unlimited, requested in batches; and at limit <concurrency> one request
  per call.
- admission: the gate at limit <concurrency> with no worker running (the
  requests alone), then drain: a worker started on the queue they left.

Each figure is end to end, first request to last completion, the end read
from the recorded completion times. The hand-off is, for each completion
that freed a slot someone was waiting for, the time to the next start.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from bench import common, runs
from bench.figures import handoffs, out_of_order, percentile

ROWS = ("plain", "teams", "semaphore", "gate", "gate-1", "gate-unlimited", "gate-single", "admission")
# Rows that touch PostgreSQL run before the gate row whose statements are
# counted, and the plain row (which does not) between them, so that what
# they leave unflushed in the statistics does not land in its window.
RUN_ORDER = ("teams", "semaphore", "gate-1", "gate-unlimited", "gate-single", "plain", "gate", "admission")
# How often the plain and semaphore rows look at their Redis counters.
REDIS_POLL_SECONDS = 0.02
# PostgreSQL 15 sends an idle backend's last counters up to 10 s late
# (PGSTAT_IDLE_INTERVAL); wait that out before a baseline.
STATS_IDLE_FLUSH_SECONDS = 11.0
# A closed backend's counters arrive shortly after it exits.
STATS_EXIT_FLUSH_SECONDS = 0.6
WARM_UP = 50


@dataclass
class Row:
    name: str
    count: int
    seconds: float
    handoff_seconds: list[float] | None = None
    out_of_order: str = "—"
    notes: list[str] = field(default_factory=list)
    # Rates of different things (requests, executions) are not compared.
    comparable: bool = True
    # Queries the benchmark itself made to see the end, for the counters.
    polls: int = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")


# --- plain Celery --------------------------------------------------------------


def run_plain(count: int) -> Row:
    from bench.tasks import DONE_KEY, plain_noop

    client = common.gate_redis()
    client.delete(DONE_KEY)
    started = time.time()
    for _ in range(count):
        plain_noop.apply_async(queue="default")
    while int(client.get(DONE_KEY) or 0) < count:
        time.sleep(REDIS_POLL_SECONDS)
    ended = time.time()
    return Row("plain Celery (no database)", count, ended - started)


# --- Celery as teams use it ------------------------------------------------------


def create_task_rows() -> None:
    from django.db import connection

    from bench.tasks import TASK_ROW_TABLE

    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TASK_ROW_TABLE} (id uuid primary key, status varchar(20), "
            "created timestamptz, started_at timestamptz, completed_at timestamptz)"
        )


def truncate_task_rows() -> None:
    from django.db import connection

    from bench.tasks import TASK_ROW_TABLE

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TASK_ROW_TABLE}")


def run_teams(count: int) -> Row:
    from django.db import connection
    from django.utils import timezone

    from bench.tasks import TASK_ROW_TABLE, row_noop

    truncate_task_rows()
    started = time.time()
    with connection.cursor() as cursor:
        for _ in range(count):
            row_id = str(uuid.uuid4())
            cursor.execute(
                f"INSERT INTO {TASK_ROW_TABLE} (id, status, created) VALUES (%s, 'pending', %s)",
                [row_id, timezone.now()],
            )
            row_noop.apply_async(args=[row_id], queue="default")
        while True:
            cursor.execute(f"SELECT count(*) FROM {TASK_ROW_TABLE} WHERE status = 'success'")
            if cursor.fetchone()[0] >= count:
                break
            time.sleep(runs.POLL_SECONDS)
        cursor.execute(f"SELECT created, started_at, completed_at FROM {TASK_ROW_TABLE} ORDER BY created")
        rows = cursor.fetchall()
    ended = max(row[2] for row in rows).timestamp()
    # Request order is creation order: one requester made them one by one.
    by_start = sorted(range(len(rows)), key=lambda index: rows[index][1])
    return Row(
        "Celery as teams use it (a row per task: INSERT, 2 UPDATEs)",
        count,
        ended - started,
        out_of_order=f"start {out_of_order(by_start)}",
    )


# --- the Celery idiom for a limit --------------------------------------------------


def run_semaphore(count: int, limit: int) -> Row:
    from bench import tasks

    client = common.gate_redis()
    # One key per call: on a cluster the keys are in different slots.
    for key in (
        tasks.SEMAPHORE_KEY,
        tasks.SEMAPHORE_STARTS_KEY,
        tasks.SEMAPHORE_RELEASES_KEY,
        tasks.SEMAPHORE_RETRIES_KEY,
    ):
        client.delete(key)
    sent: list[float] = []
    started = time.time()
    for index in range(count):
        sent.append(time.time())
        tasks.semaphore_noop.apply_async(args=[index, limit], queue="default")
    while client.llen(tasks.SEMAPHORE_RELEASES_KEY) < count:
        time.sleep(REDIS_POLL_SECONDS)
    start_records = [str(raw).split(":") for raw in client.lrange(tasks.SEMAPHORE_STARTS_KEY, 0, -1)]
    starts = sorted((float(moment), int(index)) for index, moment in start_records)
    releases = [float(raw) for raw in client.lrange(tasks.SEMAPHORE_RELEASES_KEY, 0, -1)]
    retries = int(client.get(tasks.SEMAPHORE_RETRIES_KEY) or 0)
    countdown_ms = tasks.SEMAPHORE_COUNTDOWN_SECONDS * 1000
    return Row(
        f"Celery idiom for a limit: Redis semaphore, limit {limit}, retry countdown {countdown_ms:g} ms",
        count,
        max(releases) - started,
        handoff_seconds=handoffs(
            releases, [moment for moment, _ in starts], queued=[sent[index] for _, index in starts]
        ),
        out_of_order=f"start {out_of_order([index for _, index in starts])}",
        notes=[f"semaphore at limit {limit}: {retries} retries ({retries / count:.2f} per execution)"],
    )


# --- the gate -----------------------------------------------------------------------


def gate_row(name: str, count: int, started: float | None, limited: bool, polls: int) -> Row:
    """A row from what the executions table recorded; ``started`` None
    times it from the first start rather than from the first request."""
    recorded = runs.recorded()
    return Row(
        name,
        count,
        max(recorded.completed) - (min(recorded.started) if started is None else started),
        handoff_seconds=handoffs(recorded.completed, recorded.started, queued=recorded.enqueued)
        if limited
        else None,
        out_of_order=f"grant {out_of_order(recorded.grant_order())} / "
        f"start {out_of_order(recorded.start_order())}",
        polls=polls + 1,
    )


def run_gate(name: str, count: int, limit: int | None, batch: int, *, single: bool = False) -> Row:
    runs.clear_executions()
    runs.configure_noop(limit, count)
    poller = runs.Poller()
    started = time.time()
    runs.request(count, batch, single=single)
    poller.wait(count)
    return gate_row(name, count, started, limit is not None, poller.queries)


# --- PostgreSQL work per execution ----------------------------------------------------


@dataclass(frozen=True)
class PgCounters:
    commits: int
    inserts: int
    updates: int
    statements: int | None

    def __sub__(self, other: PgCounters) -> PgCounters:
        statements = (
            None
            if self.statements is None or other.statements is None
            else self.statements - other.statements
        )
        return PgCounters(
            self.commits - other.commits,
            self.inserts - other.inserts,
            self.updates - other.updates,
            statements,
        )


def enable_statement_counts() -> bool:
    """Whether pg_stat_statements can be read in this database (it must be
    preloaded by the server; the extension is created if it is)."""
    from django.db import DatabaseError, connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_preload_libraries")
        if "pg_stat_statements" not in cursor.fetchone()[0]:
            return False
        try:
            cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cursor.execute("SELECT 1 FROM pg_stat_statements LIMIT 1")
        except DatabaseError:
            return False
    return True


def read_pg_counters(with_statements: bool) -> PgCounters:
    """The database's counters, this process's own included: its connection
    is closed first, because a backend's counters are sent when it goes idle
    or exits, not after every statement."""
    from django.db import connection

    from executions.models import Execution

    connection.close()
    time.sleep(STATS_EXIT_FLUSH_SECONDS)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        commits = int(cursor.fetchone()[0])
        cursor.execute(
            "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = %s",
            [Execution._meta.db_table],
        )
        inserts, updates = (int(value) for value in cursor.fetchone())
        statements = None
        if with_statements:
            cursor.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            statements = int(cursor.fetchone()[0])
    return PgCounters(commits, inserts, updates, statements)


# --- admission alone, drain alone --------------------------------------------------------


def run_admission(count: int, concurrency: int, batch: int) -> Row:
    runs.clear_executions()
    runs.configure_noop(concurrency, count)
    seconds = runs.request(count, batch)
    return Row(
        f"gate admission alone (no worker), limit {concurrency}: requests/s",
        count,
        seconds,
        comparable=False,
    )


def run_drain(count: int, concurrency: int) -> Row:
    """Wait for the admitted executions to run; timed from the first start,
    so the worker's own start-up is left out."""
    poller = runs.Poller()
    poller.wait(count)
    name = f"gate drain alone (worker started on {count} waiting), limit {concurrency}"
    return gate_row(name, count, None, True, poller.queries)


# --- output ---------------------------------------------------------------------------------


def setting_lines(args: argparse.Namespace) -> list[str]:
    return [
        f"- one `celery worker -c {args.concurrency}` for every row; {args.count} executions per row",
        f"- gate requests in batches of {args.batch} through services.request_executions "
        "(one transaction and one gate step per batch), except the one-request-per-call row",
        "- the plain and semaphore rows count in the gate's Redis, through the same client as the "
        "gate (redis-py's cluster client on a cluster)",
    ]


def _ms(values: list[float] | None, q: float) -> str:
    if not values:
        return "—"
    return f"{percentile(values, q) * 1000:.1f}"


def _ratio(row: Row, base: Row | None) -> str:
    if base is None or not row.comparable:
        return "—"
    return f"{row.rate / base.rate:.2f}"


def table(rows: list[Row], plain: Row | None, teams: Row | None) -> list[str]:
    lines = [
        "| row | per second | seconds | hand-off p50 (ms) | hand-off p99 (ms) "
        "| starts out of request order | vs plain | vs teams |",
        "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.rate:.1f} | {row.seconds:.2f} | {_ms(row.handoff_seconds, 50)} "
            f"| {_ms(row.handoff_seconds, 99)} | {row.out_of_order} | {_ratio(row, plain)} "
            f"| {_ratio(row, teams)} |"
        )
    return lines


def counters_lines(name: str, delta: PgCounters, count: int, polls: int) -> list[str]:
    lines = [
        f"PostgreSQL per execution, {name} (read once the worker had stopped, so that "
        "every backend had sent its counters):",
        f"- inserts into executions_execution: {delta.inserts / count:.2f}",
        f"- row updates of executions_execution: {delta.updates / count:.2f}",
        f"- transactions committed (read-only ones too, the benchmark's {polls} polls left out): "
        f"{(delta.commits - polls) / count:.2f}",
    ]
    if delta.statements is None:
        lines.append("- statements: pg_stat_statements is not loaded by this server")
    else:
        lines.append(f"- statements (pg_stat_statements): {(delta.statements - polls) / count:.2f}")
    return lines


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="executions per row (default 10000)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--batch", type=int, default=100, help="gate requests per call (default 100)")
    parser.add_argument(
        "--semaphore-limits",
        default="2,1",
        help="comma-separated limits, a semaphore row each (default 2,1: at the worker's concurrency, "
        "with -c 2, it is never full, so 1 shows what a limit that binds costs it)",
    )
    parser.add_argument(
        "--rows", default=",".join(ROWS), help=f"comma-separated, any of: {', '.join(ROWS)} (default: all)"
    )
    args = parser.parse_args()
    selected = [name.strip() for name in args.rows.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows: {', '.join(unknown)}; choose from {', '.join(ROWS)}")

    semaphore_limits = [int(value) for value in args.semaphore_limits.split(",") if value.strip()]
    common.setup_django()
    common.reset_state()
    create_task_rows()
    truncate_task_rows()
    with_statements = enable_statement_counts()
    count, concurrency, batch = args.count, args.concurrency, args.batch
    c = concurrency
    worker_rows: dict[str, Callable[[], Row]] = {
        "plain": lambda: run_plain(count),
        "teams": lambda: run_teams(count),
        "gate": lambda: run_gate(f"gate, limit {c}, batches of {batch}", count, c, batch),
        "gate-1": lambda: run_gate(f"gate, limit 1, batches of {batch}", count, 1, batch),
        "gate-unlimited": lambda: run_gate(f"gate, unlimited, batches of {batch}", count, None, batch),
        "gate-single": lambda: run_gate(
            f"gate, limit {c}, one request per call", count, c, batch, single=True
        ),
    }
    results: dict[str, Row] = {}
    counted: list[str] = []

    print(f"# Throughput: {count} no-op executions per row", flush=True)
    for line in [*common.machine_summary(), *setting_lines(args)]:
        print(line, flush=True)
    with common.celery_worker(concurrency):
        # Warm the pool's imports and connections on every path.
        run_plain(WARM_UP)
        run_teams(WARM_UP)
        run_gate("warm-up", WARM_UP, concurrency, batch)
        for name in RUN_ORDER:
            if name == "semaphore" and name in selected:
                for limit in semaphore_limits:
                    print(f"  running semaphore at limit {limit} ...", file=sys.stderr, flush=True)
                    results[f"semaphore-{limit}"] = run_semaphore(count, limit)
                continue
            if name not in selected or name not in worker_rows:
                continue
            if name == "gate":
                time.sleep(STATS_IDLE_FLUSH_SECONDS)
                before = read_pg_counters(with_statements)
            print(f"  running {name} ...", file=sys.stderr, flush=True)
            results[name] = worker_rows[name]()
    if "gate" in results:
        delta = read_pg_counters(with_statements) - before
        counted = counters_lines(results["gate"].name, delta, count, polls=results["gate"].polls)

    if "admission" in selected:
        print("  running admission, then drain ...", file=sys.stderr, flush=True)
        before = read_pg_counters(with_statements)
        results["admission"] = run_admission(count, concurrency, batch)
        with common.celery_worker(concurrency):
            results["drain"] = run_drain(count, concurrency)
        delta = read_pg_counters(with_statements) - before
        name = "admission alone + drain alone"
        counted += ["", *counters_lines(name, delta, count, polls=results["drain"].polls)]

    semaphores = [f"semaphore-{limit}" for limit in semaphore_limits]
    order = [part for name in ROWS[:-1] for part in (semaphores if name == "semaphore" else [name])]
    order += ["admission", "drain"]
    print()
    shown = [results[name] for name in order if name in results]
    for line in table(shown, results.get("plain"), results.get("teams")):
        print(line)
    notes = [note for row in results.values() for note in row.notes]
    print()
    print(
        "Hand-off: for each completion that freed a slot someone was waiting for, the time to the next "
        "start (gate: completed_at to started_at in the executions table)."
    )
    print(
        "Out of order: executions that started after a later-requested one had (grant: by grant_seq, "
        "start: by started_at)."
    )
    for note in notes:
        print(note)
    if counted:
        print()
        for line in counted:
            print(line)
    common.reset_state()
    truncate_task_rows()


if __name__ == "__main__":
    main()
