"""A SIGTERM that arrives while a run's end is being recorded waits until
the recording is done."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from workers.execution import sigterm_deferred


@pytest.fixture
def received() -> Iterator[list[int]]:
    signals: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: signals.append(signum))
    yield signals
    signal.signal(signal.SIGTERM, previous)


def test_it_holds_a_sigterm_back_until_the_block_ends(received: list[int]) -> None:
    with sigterm_deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert received == []
    assert received == [signal.SIGTERM]


def test_it_leaves_sigterm_unblocked_after_the_block(received: list[int]) -> None:
    with sigterm_deferred():
        pass
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.05)
    assert received == [signal.SIGTERM]


def test_it_holds_a_sigterm_back_while_another_thread_runs(received: list[int]) -> None:
    # The kernel may hand a process-wide signal to any thread; the deferral
    # must not depend on which one gets it.
    stop = threading.Event()
    bystander = threading.Thread(target=stop.wait, daemon=True)
    bystander.start()
    try:
        with sigterm_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert received == []
        assert received == [signal.SIGTERM]
    finally:
        stop.set()
        bystander.join()
