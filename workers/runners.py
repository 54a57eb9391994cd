"""Action runners: how a `python` or a `shell` action is actually run."""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import signal
import string
import subprocess
from collections.abc import Callable
from typing import Any

from workers.exceptions import ActionError, ActionTimedOut, EntrypointNotFound

OUTPUT_LIMIT_BYTES = 64 * 1024


def load_callable(dotted_path: str) -> Callable[..., Any]:
    module_name, _, attr = dotted_path.rpartition(".")
    if not module_name:
        raise EntrypointNotFound(f"Entrypoint '{dotted_path}' is not a dotted path to a callable")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EntrypointNotFound(f"Entrypoint '{dotted_path}' cannot be imported: {exc}") from exc
    if not callable(target):
        raise EntrypointNotFound(f"Entrypoint '{dotted_path}' is not callable")
    return target


def run_python(entrypoint: str, parameters: dict[str, Any], timeout_seconds: float) -> Any:
    """Call the entrypoint with the parameters as keyword arguments.

    The timeout is enforced by Celery's soft time limit (it raises inside
    the call); an exception from the action propagates as the failure.
    """
    return load_callable(entrypoint)(**parameters)


class _ShellFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        # `{name:raw}` is for an action whose parameter *is* the command
        # (core.local): its author chose to run whatever the caller sends.
        if format_spec == "raw":
            return str(value)
        return shlex.quote(format(value, format_spec))


def render_command(template: str, parameters: dict[str, Any]) -> str:
    """Fill {name} placeholders with shell-quoted parameter values, so a
    parameter can never inject shell syntax; {name:raw} inserts the value
    as shell code."""
    try:
        return _ShellFormatter().format(template, **parameters)
    except KeyError as exc:
        raise ActionError(f"Command template needs parameter {exc}") from exc


def _tail(data: bytes) -> str:
    return data[-OUTPUT_LIMIT_BYTES:].decode("utf-8", errors="replace")


def run_shell(template: str, parameters: dict[str, Any], timeout_seconds: float) -> dict[str, Any]:
    """Run the command in its own process group; return stdout, stderr and
    exit code, raising ActionError on a non-zero exit.

    Whatever ends the wait (timeout, Celery's soft time limit, a cancel's
    SIGTERM turned into an exception) kills the whole process group, so no
    child of the command outlives its execution.
    """
    command = render_command(template, parameters)
    process = subprocess.Popen(
        ["/bin/sh", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        stdout, stderr = process.communicate()
        raise ActionTimedOut(
            f"Command ran longer than {timeout_seconds:g} s",
            result={"stdout": _tail(stdout), "stderr": _tail(stderr), "exit_code": None},
        ) from None
    except BaseException:
        _kill_group(process)
        process.communicate()
        raise
    result = {"stdout": _tail(stdout), "stderr": _tail(stderr), "exit_code": process.returncode}
    if process.returncode != 0:
        raise ActionError(f"Command exited with status {process.returncode}", result=result)
    return result


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


RUNNERS: dict[str, Callable[[str, dict[str, Any], float], Any]] = {
    "python": run_python,
    "shell": run_shell,
}
