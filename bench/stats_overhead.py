"""What persisting queue statistics costs: the same burst of no-op
executions through real workers with the queue_stats flusher on and off,
in one run.

    python bench/stats_overhead.py [--count 1000] [--concurrency 2] [--rounds 2]

Each round starts a `celery worker` with ATTUNE_STATS_FLUSH_ENABLED set to
1 or to 0 and runs `--count` executions of `core.noop` (limit equal to the
worker's concurrency), timed from the first request to the last
completion. Rounds alternate on, off, off, on, ... so that a machine
getting slower or faster during the run weighs on both sides alike. With
the flusher on, it also counts the rows PostgreSQL wrote into queue_stats,
against the at least three queue state changes of every execution.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run as a script (python bench/stats_overhead.py): the repository is not on the path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, runs


def row_writes() -> int:
    from django.db import connection

    from queues.models import QueueStats

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = %s",
            [QueueStats._meta.db_table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def run_round(flush: bool, count: int, concurrency: int) -> tuple[float, int]:
    """Seconds for the burst, and rows written into queue_stats meanwhile."""
    common.reset_state()
    env = {"ATTUNE_STATS_FLUSH_ENABLED": "1" if flush else "0"}
    before = row_writes()
    with common.celery_worker(concurrency, env):
        runs.configure_noop(concurrency, count)
        started = time.perf_counter()
        runs.request(count, 100)
        runs.Poller().wait(count)
        seconds = time.perf_counter() - started
        # Let the flusher write the final state, as it would in production.
        time.sleep(1.0)
    # The worker has exited, so PostgreSQL has counted its writes.
    return seconds, row_writes() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per setting (default 2)")
    args = parser.parse_args()
    common.setup_django()
    from django.conf import settings

    results: dict[bool, list[tuple[float, int]]] = {True: [], False: []}
    order = [True, False, False, True] * ((args.rounds + 1) // 2)
    for flush in order[: 2 * args.rounds]:
        seconds, writes = run_round(flush, args.count, args.concurrency)
        results[flush].append((seconds, writes))
        label = "on " if flush else "off"
        print(
            f"  round, stats {label}: {args.count / seconds:8.1f} executions/s ({seconds:.2f} s), "
            f"{writes} rows written"
        )
    common.reset_state()

    def rate(flush: bool) -> float:
        return args.count * len(results[flush]) / sum(seconds for seconds, _ in results[flush])

    on, off = rate(True), rate(False)
    writes_on = sum(writes for _, writes in results[True]) / len(results[True])
    print(
        f"executions: {args.count} per round, rounds: {args.rounds} per setting, "
        f"worker concurrency: {args.concurrency}"
    )
    print(f"flush interval: {settings.ATTUNE_STATS_FLUSH_INTERVAL_SECONDS:g} s")
    print(f"stats persistence on:   {on:8.1f} executions/s")
    print(f"stats persistence off:  {off:8.1f} executions/s")
    print(f"ratio on/off:           {on / off:8.3f}")
    print(
        f"queue_stats rows written per round with stats on: {writes_on:.0f} "
        f"(queue state changes: >= {3 * args.count})"
    )


if __name__ == "__main__":
    main()
