import logging
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from queues import metrics
from queues.reaper import ReapReport, reap_once
from queues.redis_client import UNAVAILABLE_ERRORS

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Reclaim expired leases, time out overdue waits and admit stranded requests."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop", action="store_true", help="run forever, every ATTUNE_REAPER_INTERVAL_SECONDS"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        interval = float(settings.ATTUNE_REAPER_INTERVAL_SECONDS)
        if options["loop"]:
            # Lease reclaims and queue timeouts are counted here, nowhere else.
            metrics.start_exporter(settings.ATTUNE_REAPER_METRICS_PORT, role="reaper")
        while True:
            try:
                report = reap_once()
            except UNAVAILABLE_ERRORS:
                if not options["loop"]:
                    raise
                # Redis, or one cluster primary, is away. The reaper must
                # outlive it: once the node is back, it is what rebuilds the
                # queues the node lost and admits the requests made meanwhile.
                logger.exception("reaper pass failed: Redis unavailable; next pass in %s s", interval)
                report = ReapReport(ran=False)
            if report.ran and (
                report.requeued
                or report.abandoned
                or report.freed
                or report.queue_timeouts
                or report.stranded_admitted
                or report.rebuilt
                or report.workers_offline
            ):
                self.stdout.write(str(report))
            if not options["loop"]:
                if not report.ran:
                    self.stdout.write("another reaper holds the lock; nothing done")
                else:
                    self.stdout.write(str(report))
                return
            close_old_connections()
            time.sleep(interval)
