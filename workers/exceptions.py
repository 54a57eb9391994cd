"""Errors raised while running an action. Each docstring is its default message."""


class ActionError(Exception):
    """The action failed."""

    def __init__(self, message: str | None = None, result: object = None) -> None:
        super().__init__(message or self.__doc__)
        self.result = result


class ActionTimedOut(ActionError):
    """The action ran longer than its timeout_seconds."""


class ExecutionCancelled(ActionError):
    """The execution was cancelled while running."""


class EntrypointNotFound(ActionError):
    """The action's entrypoint cannot be imported."""
