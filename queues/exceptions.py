"""Errors raised by the queue services. Each docstring is its default message."""

from executions.exceptions import AttuneError


class QueueStatsNotFound(AttuneError):
    """No queue statistics are available for the action."""
