"""Errors raised by the execution services. Each docstring is its default message."""


class AttuneError(Exception):
    """Attune could not complete the operation."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.__doc__)
        self.message = message or (self.__doc__ or "")

    def __str__(self) -> str:
        return self.message


class IllegalTransition(AttuneError):
    """The execution cannot move to that status from its current one."""


class ActionNotFound(AttuneError):
    """No action has that ref."""


class ActionDisabled(AttuneError):
    """The action is disabled and cannot be executed."""


class InvalidParameters(AttuneError):
    """The parameters do not match the action's schema."""

    def __init__(self, message: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class QueueFull(AttuneError):
    """The action's queue is full."""

    def __init__(self, message: str, *, action_ref: str, limit: int, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.action_ref = action_ref
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds


class ExecutionNotFound(AttuneError):
    """No execution has that id."""


class AlreadyTerminal(AttuneError):
    """The execution has already ended."""


class PermissionDenied(AttuneError):
    """You may not do that."""


class AlreadyExists(AttuneError):
    """Something with that ref exists already."""


class ImmutableField(AttuneError):
    """That field cannot be changed once created."""

    def __init__(self, message: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class PackNotFound(AttuneError):
    """No pack has that ref."""
