"""Keeps a running execution's slot lease alive while its worker lives."""

from __future__ import annotations

import logging
import threading

from django.conf import settings

from queues.gate import get_gate
from queues.keys import QueueRef
from queues.policy import lease_ms

logger = logging.getLogger(__name__)
# Renew well before expiry so one slow round trip never loses a lease.
RENEWALS_PER_LEASE = 3


class LeaseKeeper:
    """A daemon thread renewing one execution's lease until stopped.

    If the process dies, renewals stop and the reaper reclaims the slot
    once the lease runs out: that is the whole point of a lease.
    """

    def __init__(self, queue: QueueRef, execution_id: str) -> None:
        self.queue = queue
        self.execution_id = execution_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{execution_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._renew()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _renew(self) -> None:
        try:
            if not get_gate().renew(self.queue, [self.execution_id], lease_ms=lease_ms()):
                logger.warning("lease of execution %s was already reclaimed", self.execution_id)
        except Exception:  # Redis briefly away: keep trying; the lease is long enough
            logger.exception("lease renewal failed for execution %s", self.execution_id)

    def _run(self) -> None:
        interval = float(settings.ATTUNE_LEASE_SECONDS) / RENEWALS_PER_LEASE
        while not self._stop.wait(interval):
            self._renew()
