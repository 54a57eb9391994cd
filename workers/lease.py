"""Keeps the slot leases of a worker process's running executions alive.

One thread per process renews every execution the process is running, in
one Redis round trip per renewal period, however many runs there are (a
thread pool runs several at once). If the process dies, renewals stop and
the reaper reclaims the slots once their leases run out: that is the whole
point of a lease.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator

from django.conf import settings

from queues.gate import get_gate
from queues.keys import QueueRef
from queues.policy import lease_ms

logger = logging.getLogger(__name__)
# Renew well before expiry so one slow round trip never loses a lease.
RENEWALS_PER_LEASE = 3


def renewal_interval_seconds() -> float:
    return float(settings.ATTUNE_LEASE_SECONDS) / RENEWALS_PER_LEASE


class LeaseKeeper:
    """The process's renewal thread and the runs it keeps alive."""

    def __init__(self) -> None:
        self._held: dict[str, QueueRef] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._owner_pid = 0

    @contextlib.contextmanager
    def holding(self, queue: QueueRef, execution_id: str, *, granted_at: float | None) -> Iterator[None]:
        """Keep ``execution_id``'s lease alive while the block runs.

        A grant sets its lease to a whole period from when it was made. A
        run that starts within one renewal interval of its grant (the usual
        case: ``granted_at`` is the grant's header) is first renewed by the
        thread's next pass, which comes within one interval, so it costs
        nothing at start; a run whose grant is older (its message waited in
        the broker) or unknown is renewed at once. The interval is a third
        of the lease, so clocks of the granting and running hosts may differ
        by up to that much without a lease running out.
        """
        interval = renewal_interval_seconds()
        if granted_at is None or time.time() - granted_at > interval:
            self._renew({execution_id: queue}, announce_lost=True)
        with self._lock:
            self._held[execution_id] = queue
        self._ensure_thread()
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(execution_id, None)

    def held(self) -> dict[str, QueueRef]:
        with self._lock:
            return dict(self._held)

    def _ensure_thread(self) -> None:
        # A prefork pool process inherits the object but not the thread.
        if self._thread is not None and self._owner_pid == os.getpid() and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._owner_pid == os.getpid() and self._thread.is_alive():
                return
            self._owner_pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="lease-keeper", daemon=True)
            self._thread.start()

    def _renew(self, held: dict[str, QueueRef], *, announce_lost: bool = False) -> None:
        by_queue: dict[QueueRef, list[str]] = {}
        for execution_id, queue in held.items():
            by_queue.setdefault(queue, []).append(execution_id)
        try:
            renewed = get_gate().renew_many(by_queue, lease_ms=lease_ms())
        except Exception:  # Redis briefly away: keep trying; the lease is long enough
            logger.exception("lease renewal failed for %d executions", len(held))
            return
        if announce_lost and renewed < len(held):
            logger.warning("lease of execution %s was already reclaimed", ", ".join(held))

    def _run(self) -> None:
        while True:
            time.sleep(renewal_interval_seconds())
            held = self.held()
            if held:
                self._renew(held)


_keeper = LeaseKeeper()


def lease_keeper() -> LeaseKeeper:
    return _keeper
