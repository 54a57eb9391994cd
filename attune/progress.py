"""Progress of a long management command, shown to whoever runs it.

On a terminal a live bar (tqdm) redraws in place. Anywhere else (a pipe, a
file, a CI or container log, cron) carriage returns would make a mess, so
the same updates become plain lines, at most one per ``interval_seconds``
(the first at once) plus a final one, written as soon as the total is
reached or else at close::

    progress: executions done=3 total=10 running=2 waiting=5 elapsed=1.2s

Every field after the unit is ``name=value``, so a script can split on
spaces and ``=``.

Commands write progress to stderr and their results to stdout, so the
results stay exactly what they were for the scripts and tests that read
them. ``--no-progress`` (or ``-v 0``) switches it off: for cron, say,
which mails what a job writes on stderr.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

from django.core.management.base import BaseCommand, CommandParser, OutputWrapper
from tqdm import tqdm

PLAIN_INTERVAL_SECONDS = 1.0
# A bar redrawn faster than this only costs terminal writes.
BAR_MIN_INTERVAL_SECONDS = 0.1
# "executions:  50%|#####     | 5/10 done [00:03<00:03, running=2, waiting=3]"
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} done [{elapsed}<{remaining}{postfix}]"
NO_PROGRESS_HELP = (
    "show no progress (nor does -v 0). Otherwise progress goes to stderr (stdout keeps only the "
    "results): a live bar on a terminal, else a plain 'progress: ...' line at most once a second "
    "and a final one"
)


class TextStream(Protocol):
    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


def _isatty(stream: TextStream) -> bool:
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except ValueError:  # a closed stream
        return False


class Progress:
    """One task's progress: call ``update`` (or the instance itself, as a
    service's ``(done, total)`` callback) as it moves, then ``close``, or
    use it as a context manager.

    Nothing is written before the first update, nor at close if there was
    none, so a command that fails before its work starts prints only its
    error. With ``enabled=False`` every call does nothing.
    """

    def __init__(
        self,
        stream: TextStream,
        unit: str,
        *,
        enabled: bool = True,
        interval_seconds: float = PLAIN_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.unit = unit
        self.done = 0
        self.total: int | None = None
        self.counts: dict[str, int] = {}
        self._stream = stream
        self._enabled = enabled
        self._tty = enabled and _isatty(stream)
        self._interval = interval_seconds
        self._clock = clock
        self._started = clock()
        self._bar: tqdm | None = None
        self._updated = False
        self._closed = False
        self._last_line_at: float | None = None
        self._last_state: tuple[Any, ...] | None = None

    @property
    def is_tty(self) -> bool:
        return self._tty

    def update(self, done: int, total: int | None = None, **counts: int) -> None:
        """Record ``done`` of ``total`` (None keeps the known total) and
        any other counts to show beside them (running=2, waiting=5)."""
        if not self._enabled or self._closed:
            return
        self.done = done
        if total is not None:
            self.total = total
        self.counts = dict(counts)
        self._updated = True
        if self._tty:
            self._draw_bar()
            return
        now = self._clock()
        # Reaching the total is said at once, before whatever the command
        # or its service prints or logs next.
        finished = self.total is not None and self.done >= self.total and self._state() != self._last_state
        due = self._last_line_at is None or now - self._last_line_at >= self._interval
        if due or finished:
            self._write_line(now)

    def __call__(self, done: int, total: int) -> None:
        self.update(done, total)

    def close(self) -> None:
        """Draw the final state: the bar at its last value, or a final
        plain line unless the last one already said the same."""
        if self._closed:
            return
        self._closed = True
        if not self._updated:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._state() != self._last_state:
            self._write_line(self._clock())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _state(self) -> tuple[Any, ...]:
        return (self.done, self.total, tuple(self.counts.items()))

    def _write_line(self, now: float) -> None:
        fields = [f"done={self.done}"]
        if self.total is not None:
            fields.append(f"total={self.total}")
        fields += [f"{name}={value}" for name, value in self.counts.items()]
        fields.append(f"elapsed={now - self._started:.1f}s")
        self._stream.write(f"progress: {self.unit} {' '.join(fields)}\n")
        self._stream.flush()
        self._last_line_at = now
        self._last_state = self._state()

    def _draw_bar(self) -> None:
        if self._bar is None:
            self._bar = tqdm(
                total=self.total,
                desc=self.unit,
                bar_format=BAR_FORMAT,
                postfix=self.counts or None,
                file=self._stream,
                leave=True,
                dynamic_ncols=True,
                mininterval=BAR_MIN_INTERVAL_SECONDS,
            )
        bar = self._bar
        if self.total is not None and bar.total != self.total:
            bar.total = self.total
        bar.set_postfix(self.counts, refresh=False)
        # update() redraws only when mininterval has passed: a service
        # reporting every row must not cost a terminal write per row.
        bar.update(self.done - bar.n)


class CommandStream:
    """A management command's stderr for a progress bar: Django's
    OutputWrapper adds a newline to every write and, on a terminal, paints
    stderr red; a bar redrawing in place needs neither."""

    def __init__(self, output: OutputWrapper) -> None:
        self._output = output

    @property
    def encoding(self) -> str | None:
        return getattr(self._output, "encoding", None)

    def write(self, text: str) -> int:
        self._output.write(text, style_func=_unstyled, ending="")
        return len(text)

    def flush(self) -> None:
        self._output.flush()

    def isatty(self) -> bool:
        return self._output.isatty()

    def fileno(self) -> int:
        # tqdm asks the terminal its width through this; a StringIO raises
        # and tqdm falls back to a fixed width.
        return int(self._output.fileno())


def _unstyled(text: str) -> str:
    return text


def add_progress_argument(parser: CommandParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help=NO_PROGRESS_HELP)


def command_progress(command: BaseCommand, options: dict[str, Any], unit: str) -> Progress:
    """The progress of ``command``'s work, on its stderr; off with
    --no-progress or --verbosity 0."""
    enabled = not options.get("no_progress", False) and options.get("verbosity", 1) > 0
    return Progress(CommandStream(command.stderr), unit, enabled=enabled)
