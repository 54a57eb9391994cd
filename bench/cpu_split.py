"""Where the CPU of a throughput row goes, process by process.

    python -m bench.cpu_split [--rows teams,gate,gate-unlimited] [--count 6000] [--window 8]

For each row, runs `python -m bench.throughput --rows <row>` and, over a
window in the middle of it, reads the CPU time of every process from /proc
(Linux only). Prints milliseconds of CPU per execution for each kind of
process (the requester, the Celery worker's main and pool processes,
PostgreSQL, Redis) and for the whole machine, whose two cores all of them
share: a row's rate is about cores / (machine CPU per execution) when the
machine is busy. Workers keep their database connections for the whole run
(CELERY_DB_REUSE_MAX), so that no PostgreSQL backend exits inside the
window with its CPU uncounted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT

KINDS = ("requester", "celery pool", "celery main", "postgres", "redis", "other")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcessCpu:
    command: str
    parent: int
    seconds: float


def classify(command: str, parent_command: str) -> str:
    """The kind of a process, from its command line and its parent's."""
    if "bench.throughput" in command:
        return "requester"
    if "celery" in command and "worker" in command:
        return "celery pool" if "celery" in parent_command else "celery main"
    if command.startswith("postgres") or "/postgres" in command:
        return "postgres"
    if "redis-server" in command:
        return "redis"
    return "other"


def per_execution(cpu_seconds: dict[str, float], executions: float) -> dict[str, float]:
    """Milliseconds of CPU per execution, by kind."""
    return {kind: seconds / executions * 1000 for kind, seconds in cpu_seconds.items()}


def _processes() -> dict[int, ProcessCpu]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        found[int(entry.name)] = ProcessCpu(command.strip(), int(fields[1]), seconds)
    return found


def _machine_busy_seconds() -> float:
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLOCK_TICKS


def _split(before: dict[int, ProcessCpu], after: dict[int, ProcessCpu]) -> dict[str, float]:
    spent: Counter[str] = Counter()
    for pid, process in after.items():
        parent = after.get(process.parent)
        kind = classify(process.command, parent.command if parent else "")
        spent[kind] += process.seconds - (before[pid].seconds if pid in before else 0.0)
    return {kind: spent[kind] for kind in KINDS}


def measure(row: str, count: int, window: float) -> tuple[float, dict[str, float]]:
    """(executions per second, ms of CPU per execution by kind and for the machine)."""
    log_path = ROOT / "var" / f"cpu-split-{row}.log"
    log_path.parent.mkdir(exist_ok=True)
    env = {**os.environ, "CELERY_DB_REUSE_MAX": "1000000000"}
    command = [sys.executable, "-m", "bench.throughput", "--rows", row, "--count", str(count)]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    while f"running {row} " not in log_path.read_text():
        if process.poll() is not None:
            raise RuntimeError(f"the benchmark stopped before row {row}; see {log_path}")
        time.sleep(0.1)
    time.sleep(1.0)
    before, busy_before = _processes(), _machine_busy_seconds()
    time.sleep(window)
    after, busy_after = _processes(), _machine_busy_seconds()
    if process.wait() != 0:
        raise RuntimeError(f"the benchmark failed; see {log_path}")
    rows = [line for line in log_path.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    rate = float(rows[1].split("|")[2])
    spent = _split(before, after)
    spent["machine"] = busy_after - busy_before
    return rate, per_execution(spent, rate * window)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="teams,gate,gate-unlimited", help="rows of bench.throughput")
    parser.add_argument("--count", type=int, default=6000, help="executions per row (default 6000)")
    parser.add_argument("--window", type=float, default=8.0, help="seconds measured within each row")
    args = parser.parse_args()
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    results = {row: measure(row, args.count, args.window) for row in rows}
    print("| ms of CPU per execution | " + " | ".join(rows) + " |")
    print("| --- |" + " ---: |" * len(rows))
    print("| executions/s in that run | " + " | ".join(f"{results[r][0]:.0f}" for r in rows) + " |")
    for kind in (*KINDS, "machine"):
        print(f"| {kind} | " + " | ".join(f"{results[r][1][kind]:.2f}" for r in rows) + " |")


if __name__ == "__main__":
    main()
