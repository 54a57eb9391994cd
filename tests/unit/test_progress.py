"""The progress of a long command: a live bar on a terminal, plain
rate-limited lines anywhere else, nothing with --no-progress."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management.base import OutputWrapper

from attune.progress import CommandStream, Progress

LINE = re.compile(r"progress: (?P<unit>\w+)(?P<fields>( \w+=[\w.]+)+)")


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as a console's stderr does."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def parse(output: str) -> list[dict[str, str]]:
    """Each line's fields; fails the test on a line of any other shape."""
    parsed = []
    for line in output.splitlines():
        match = LINE.fullmatch(line)
        assert match, f"not a progress line: {line!r}"
        parsed.append({"unit": match["unit"]} | dict(field.split("=") for field in match["fields"].split()))
    return parsed


def test_it_prints_the_first_update_at_once_then_at_most_one_line_per_interval() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "actions", clock=clock)

    for done in range(11):  # one update every 0.3 s, over 3 s
        progress.update(done, 10)
        clock.now += 0.3

    lines = parse(out.getvalue())
    # The last, reaching the total, is written at once.
    assert [line["done"] for line in lines] == ["0", "4", "8", "10"]
    assert [line["elapsed"] for line in lines] == ["0.0s", "1.2s", "2.4s", "3.0s"]
    assert {line["total"] for line in lines} == {"10"}


def test_it_prints_a_final_line_at_close() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(out, "actions", clock=clock) as progress:
        progress.update(0, 3)
        clock.now += 0.5
        progress.update(3, 3)

    lines = parse(out.getvalue())
    assert [(line["done"], line["elapsed"]) for line in lines] == [("0", "0.0s"), ("3", "0.5s")]


def test_it_prints_reaching_the_total_at_once_and_not_again_at_close() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "executions", clock=clock)
    progress.update(0, 5)
    clock.now += 0.2
    progress.update(5, 5)
    written = out.getvalue()
    clock.now += 0.2
    progress.close()

    assert [line["done"] for line in parse(written)] == ["0", "5"]
    assert out.getvalue() == written


def test_it_prints_the_last_state_at_close_when_the_total_was_not_reached() -> None:
    # A wait that timed out: the final line says how far it got.
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "executions", clock=clock)
    progress.update(0, 5, running=1, waiting=4)
    clock.now += 0.2
    progress.update(2, 5, running=1, waiting=2)
    clock.now += 0.2
    progress.close()

    assert out.getvalue().splitlines()[-1] == (
        "progress: executions done=2 total=5 running=1 waiting=2 elapsed=0.4s"
    )


def test_it_does_not_repeat_a_last_line_that_already_says_it_all() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(out, "executions", clock=clock)
    progress.update(0, 0)
    progress.close()
    progress.close()

    assert out.getvalue() == "progress: executions done=0 total=0 elapsed=0.0s\n"


def test_it_prints_the_other_counts_after_done_and_total() -> None:
    out = io.StringIO()
    with Progress(out, "executions", clock=Clock()) as progress:
        progress.update(3, 10, running=2, waiting=5)

    assert out.getvalue() == "progress: executions done=3 total=10 running=2 waiting=5 elapsed=0.0s\n"


def test_it_keeps_the_known_total_when_an_update_gives_none() -> None:
    out = io.StringIO()
    with Progress(out, "rows", clock=Clock()) as progress:
        progress.update(0, 8)
        progress.update(8)

    assert [line["total"] for line in parse(out.getvalue())] == ["8", "8"]


def test_it_serves_as_a_services_done_total_callback() -> None:
    out = io.StringIO()
    with Progress(out, "actions", clock=Clock()) as progress:
        progress(2, 7)

    assert parse(out.getvalue()) == [{"unit": "actions", "done": "2", "total": "7", "elapsed": "0.0s"}]


def test_it_writes_nothing_when_nothing_happened() -> None:
    # A command failing before its work starts prints only its error.
    out = io.StringIO()
    Progress(out, "actions").close()

    assert out.getvalue() == ""


@pytest.mark.parametrize("stream_type", [io.StringIO, Terminal])
def test_it_writes_nothing_when_disabled(stream_type: type[io.StringIO]) -> None:
    out = stream_type()
    with Progress(out, "actions", enabled=False) as progress:
        progress.update(1, 2, running=1)

    assert out.getvalue() == ""


def test_it_draws_a_bar_in_place_on_a_terminal() -> None:
    out = Terminal()
    with Progress(out, "executions") as progress:
        assert progress.is_tty
        progress.update(0, 10, running=2, waiting=8)
        progress.update(10, 10, running=0, waiting=0)

    text = out.getvalue()
    assert "progress:" not in text
    # Redrawn in place: carriage returns, one newline when it is done.
    frames = text.split("\r")
    assert len(frames) >= 3 and text.count("\n") == 1 and text.endswith("\n")
    assert re.search(r"executions:\s+0%\|.*\| 0/10 done .*running=2, waiting=8", frames[1])
    assert re.search(r"executions: 100%\|#+\| 10/10 done .*running=0, waiting=0\]", frames[-1])


def test_it_does_not_redraw_the_bar_for_every_update() -> None:
    out = Terminal()
    with Progress(out, "executions") as progress:
        for done in range(1, 10_001):
            progress.update(done, 10_000)

    assert out.getvalue().count("\r") < 100
    assert "10000/10000 done" in out.getvalue().split("\r")[-1]


def test_it_writes_through_a_commands_stderr_unstyled_and_without_added_newlines() -> None:
    raw = Terminal()
    stderr = OutputWrapper(raw)
    stderr.style_func = lambda text: f"<red>{text}</red>"  # as BaseCommand sets it on a terminal
    stream = CommandStream(stderr)

    stream.write("\rbar 1")
    stream.write("\rbar 2")
    stream.flush()

    assert stream.isatty()
    assert raw.getvalue() == "\rbar 1\rbar 2"


def test_it_tells_a_pipe_from_a_terminal_through_a_commands_stderr() -> None:
    assert not Progress(CommandStream(OutputWrapper(io.StringIO())), "rows").is_tty
    assert Progress(CommandStream(OutputWrapper(Terminal())), "rows").is_tty
