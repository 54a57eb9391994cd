"""What the FIFO gate costs: the same no-op run through plain Celery and
through Attune's gate, with the same worker settings, in one run.

    python -m bench.fifo_overhead [--count 2000] [--concurrency 2]

Plain Celery: N messages of a task that only counts itself in Redis.
Through the gate: N executions of `core.noop` with a concurrency limit
equal to the worker's concurrency, each recorded in PostgreSQL through
requested -> queued/scheduled -> running -> completed, with its slot
released and handed to the next in line by the completion listener.
Both figures are end to end: first request to last completion.
"""

from __future__ import annotations

import argparse
import time

from bench import common


def run_plain(count: int) -> float:
    import redis
    from django.conf import settings

    from bench.tasks import DONE_KEY, plain_noop

    client = redis.Redis.from_url(settings.REDIS_URL)
    client.delete(DONE_KEY)
    started = time.perf_counter()
    for _ in range(count):
        plain_noop.apply_async(queue="default")
    while int(client.get(DONE_KEY) or 0) < count:
        time.sleep(0.01)
    return time.perf_counter() - started


def run_gated(count: int, limit: int | None) -> float:
    from executions.core_pack import load_core_pack
    from executions.models import Execution, ExecutionStatus
    from executions.services import request_execution

    load_core_pack()
    from executions.models import Action

    action = Action.objects.get(ref="core.noop")
    action.concurrency_limit = limit
    action.max_queue_length = max(10000, count)
    action.save()
    started = time.perf_counter()
    for _ in range(count):
        request_execution("core.noop", {})
    while Execution.objects.filter(status=ExecutionStatus.COMPLETED).count() < count:
        time.sleep(0.05)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    common.setup_django()
    common.reset_state()
    with common.celery_worker(args.concurrency):
        run_plain(min(50, args.count))  # warm the pool's imports and connections
        plain = run_plain(args.count)
        common.reset_state()
    with common.celery_worker(args.concurrency):
        gated = run_gated(args.count, args.concurrency)
        common.reset_state()
        unlimited = run_gated(args.count, None)
    common.reset_state()
    plain_rate, gated_rate, unlimited_rate = args.count / plain, args.count / gated, args.count / unlimited
    print(f"executions: {args.count}, worker concurrency: {args.concurrency}")
    print(f"plain celery:                 {plain_rate:8.1f} executions/s ({plain:.2f} s)")
    print(f"through the gate, limit {args.concurrency}:    {gated_rate:8.1f} executions/s ({gated:.2f} s)")
    print(f"through the gate, no limit:   {unlimited_rate:8.1f} executions/s ({unlimited:.2f} s)")
    print(f"ratio gate (limit {args.concurrency})/plain:  {gated_rate / plain_rate:8.3f}")
    print(f"ratio gate (no limit)/plain:  {unlimited_rate / plain_rate:8.3f}")


if __name__ == "__main__":
    main()
