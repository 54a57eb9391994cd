from __future__ import annotations

import pytest
from billiard.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError

from executions.models import MAX_TIMEOUT_SECONDS, ExecutionStatus
from workers.exceptions import ActionError, ActionTimedOut, EntrypointNotFound, ExecutionCancelled
from workers.execution import status_for
from workers.runners import load_callable, render_command, run_python, run_shell

S = ExecutionStatus


def test_it_quotes_parameters_into_a_command_so_they_cannot_inject_shell() -> None:
    assert render_command("echo {msg}", {"msg": "hi; rm -rf /"}) == "echo 'hi; rm -rf /'"


def test_it_names_a_missing_template_parameter() -> None:
    with pytest.raises(ActionError, match="needs parameter 'name'"):
        render_command("echo {name}", {})


def test_it_captures_stdout_stderr_and_exit_code() -> None:
    result = run_shell("echo out; echo err >&2", {}, 10)
    assert result == {"stdout": "out\n", "stderr": "err\n", "exit_code": 0}


def test_it_fails_on_a_non_zero_exit_and_keeps_the_output() -> None:
    with pytest.raises(ActionError, match="exited with status 3") as caught:
        run_shell("echo partial; exit 3", {}, 10)
    assert caught.value.result == {"stdout": "partial\n", "stderr": "", "exit_code": 3}


def test_it_kills_a_command_past_its_timeout() -> None:
    with pytest.raises(ActionTimedOut, match=r"longer than 0\.3 s"):
        run_shell("sleep 20", {}, 0.3)


def test_it_runs_a_command_with_the_longest_timeout_an_action_may_have() -> None:
    # Past about 24.8 days the wait overflows (OverflowError: timeout is too large).
    assert run_shell("echo {word}", {"word": "fine"}, float(MAX_TIMEOUT_SECONDS))["stdout"] == "fine\n"


def test_it_calls_a_python_entrypoint_with_the_parameters() -> None:
    assert run_python("workers.core_actions.echo", {"message": "hi"}, 10) == {"message": "hi"}


@pytest.mark.parametrize("path", ["nodots", "workers.core_actions.missing", "no_such_module.fn"])
def test_it_names_an_entrypoint_it_cannot_import(path: str) -> None:
    with pytest.raises(EntrypointNotFound, match=path):
        load_callable(path)


@pytest.mark.parametrize(
    ("exception", "status"),
    [
        (SoftTimeLimitExceeded(), S.TIMEOUT),
        (TimeLimitExceeded(5), S.TIMEOUT),
        (ActionTimedOut(), S.TIMEOUT),
        (ExecutionCancelled(), S.CANCELLED),
        (WorkerLostError(), S.ABANDONED),
        (ValueError("boom"), S.FAILED),
        (ActionError("x"), S.FAILED),
    ],
)
def test_it_maps_how_a_run_ended_to_a_terminal_status(exception: BaseException, status: str) -> None:
    assert status_for(exception) == status
