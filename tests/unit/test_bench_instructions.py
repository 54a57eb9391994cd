"""bench.instructions: reading callgrind's count, and refusing runs whose
difference would mean nothing, before anything is started."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench.instructions import _collected
from tests.conftest import ROOT


def test_it_reads_the_last_count_callgrind_printed() -> None:
    log = "==7== Callgrind, a call-graph generating cache profiler\n==7== Collected : 4068551494\n"
    assert _collected(log) == 4068551494
    with pytest.raises(RuntimeError, match="callgrind printed no count"):
        _collected("valgrind: command not found")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--parts", "worker,scheduler"], "unknown part(s): scheduler"),
        (["--small", "50", "--large", "50"], "--small must be positive and below --large, got 50 and 50"),
        (["--small", "0"], "--small must be positive and below --large, got 0 and 450"),
    ],
)
def test_it_refuses_arguments_that_would_measure_nothing(arguments: list[str], message: str) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.instructions", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 2
    assert message in completed.stderr
