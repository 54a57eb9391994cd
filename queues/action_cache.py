"""Each process's copy of the action definitions its hot path needs.

Starting a run needs the action's runner, entrypoint and timeout; handing a
freed slot on needs its Celery queue and timeout. Reading them with every
start and every end cost a join in two statements per execution, for
definitions that almost never change. So each process keeps the ones it
has read, each under the config token the gate stores with the action's
queue (``meta.config``, see queues/keys.py), and reads one again when the
token it is handed differs:

- every save of an action or its pack refills the action's queue with a
  new token, after the save is committed (executions/signals.py), so a
  definition read under a token is at least as new as the token;
- the grant message carries the token current when the slot was granted,
  and a release returns the current one, so a run starts with the
  definition in force when its slot was granted, and a slot is handed on
  with the one in force when it was freed;
- without a token (a message from before tokens, or a queue just rebuilt)
  the definition is read from the database and not kept;
- an entry is kept at most MAX_AGE_SECONDS: a process that died between
  saving an action and refilling its queue leaves the old token in place,
  and this bounds how long anyone runs the old definition after that.
"""

from __future__ import annotations

import threading
import time

from executions.models import Action

MAX_AGE_SECONDS = 60.0


class ActionCache:
    def __init__(self, max_age_seconds: float = MAX_AGE_SECONDS) -> None:
        self.max_age_seconds = max_age_seconds
        # action id -> (config token, the action, when it was read: monotonic seconds)
        self._entries: dict[int, tuple[str, Action, float]] = {}
        self._lock = threading.Lock()

    def get(self, action_id: int, config: str | None) -> Action:
        """The action with its pack, as of ``config`` or newer. The object
        is shared by every caller: read it, never change it."""
        entry = self._entries.get(action_id)
        if (
            entry is not None
            and config
            and entry[0] == config
            and time.monotonic() - entry[2] < self.max_age_seconds
        ):
            return entry[1]
        action = Action.objects.select_related("pack").get(pk=action_id)
        if config:
            self.put(action, config)
        return action

    def put(self, action: Action, config: str) -> None:
        """Keep ``action`` (read after ``config`` was stored) under ``config``."""
        if config:
            with self._lock:
                self._entries[action.pk] = (config, action, time.monotonic())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = ActionCache()


def action_cache() -> ActionCache:
    return _cache
