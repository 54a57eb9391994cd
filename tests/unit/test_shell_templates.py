"""Shell command templates: quoted by default, raw only where the action
says its parameter is the command."""

from __future__ import annotations

from executions.core_pack import CORE_ACTIONS
from workers.runners import render_command, run_shell


def test_it_inserts_a_raw_placeholder_as_shell_code() -> None:
    assert render_command("{cmd:raw}", {"cmd": "echo a; echo b"}) == "echo a; echo b"


def test_it_still_quotes_the_other_placeholders_of_a_template_with_a_raw_one() -> None:
    assert render_command("{cmd:raw} {arg}", {"cmd": "echo", "arg": "x; y"}) == "echo 'x; y'"


def test_it_runs_core_local_commands_as_the_shell_would() -> None:
    template = next(spec["entrypoint"] for spec in CORE_ACTIONS if spec["name"] == "local")
    result = run_shell(template, {"cmd": "echo one && echo two"}, 10)
    assert result["stdout"] == "one\ntwo\n"
    assert result["exit_code"] == 0
