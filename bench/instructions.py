"""Instructions per execution, counted by valgrind's callgrind.

    python -m bench.instructions [--parts worker,admission] [--small 50] [--large 450]

Throughput on a shared 2-core machine moves by up to 1.5x between runs of
the same code; an instruction count does not move with the machine's load,
so a change of a few percent on the hot path can be told apart. Each part
runs one process under callgrind twice, for ``--small`` and ``--large``
executions, and prints (large - small) / (large - small executions): what
one more execution costs that process, start-up and set-up cancelling out.

- worker: ``celery worker -P solo`` (the consumer and the runs in one
  process, what a prefork worker's main and pool processes do between
  them) draining that many no-ops at limit 2: every start but the first
  two is a hand-off (the run that ends grants and sends the next).
- admission: the requester, ``services.request_executions`` in batches of
  100 with no limit, so each request is admitted, granted and sent.

PostgreSQL and Redis are not counted (they are other processes). Needs
valgrind; uses the databases of bench.throughput.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, setup_django, worker_command

PARTS = ("worker", "admission")
STALL_SECONDS = 900.0


def _collected(log: str) -> int:
    found = re.findall(r"Collected : (\d+)", log)
    if not found:
        raise RuntimeError(f"callgrind printed no count:\n{log[-2000:]}")
    return int(found[-1])


def _callgrind(out_dir: Path, name: str) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir / name}.out"]


def _prepare(count: int, limit: int | None, *, request_them: bool) -> None:
    from bench.common import reset_state
    from bench.runs import configure_noop, request

    reset_state()
    configure_noop(limit, count)
    if request_them:
        request(count, 100)


def worker_instructions(count: int, out_dir: Path) -> int:
    """Instructions of a solo worker draining ``count`` gated no-ops."""
    from bench.runs import Poller

    _prepare(count, 2, request_them=True)
    log_path = out_dir / f"worker-{count}.log"
    env = {**os.environ, "DATABASE_CONN_MAX_AGE": "600"}
    command = [*_callgrind(out_dir, f"worker-{count}"), *worker_command("-P", "solo", "-l", "warning")]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        poller = Poller()
        deadline = time.monotonic() + STALL_SECONDS
        while poller.completed() < count:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker stopped or stalled; see {log_path}")
            time.sleep(1)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=300)
    return _collected(log_path.read_text(errors="replace"))


def admission_instructions(count: int, out_dir: Path) -> int:
    """Instructions of a requester admitting ``count`` unlimited no-ops."""
    completed = subprocess.run(
        [
            *_callgrind(out_dir, f"admission-{count}"),
            sys.executable,
            "-m",
            "bench.instructions",
            "--admit",
            str(count),
        ],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=STALL_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(completed.stderr[-3000:])
    return _collected(completed.stderr)


def _admit(count: int) -> None:
    """The measured requester: set-up, then ``count`` requests."""
    setup_django()
    _prepare(count, None, request_them=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of: {', '.join(PARTS)}")
    parser.add_argument("--small", type=int, default=50, help="executions of the first run (default 50)")
    parser.add_argument("--large", type=int, default=450, help="executions of the second run (default 450)")
    parser.add_argument("--admit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.admit is not None:
        _admit(args.admit)
        return
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s): {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    if not 0 < args.small < args.large:
        parser.error(f"--small must be positive and below --large, got {args.small} and {args.large}")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    setup_django()
    measure = {"worker": worker_instructions, "admission": admission_instructions}
    print(f"# Instructions per execution (callgrind; {args.small} and {args.large} executions per part)")
    print()
    print("| part | instructions, small run | instructions, large run | per execution |")
    print("| --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="attune-callgrind-") as tmp:
        for part in parts:
            print(f"  measuring {part} ...", file=sys.stderr, flush=True)
            small = measure[part](args.small, Path(tmp))
            large = measure[part](args.large, Path(tmp))
            per_execution = (large - small) / (args.large - args.small)
            print(f"| {part} | {small:,} | {large:,} | {per_execution:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
