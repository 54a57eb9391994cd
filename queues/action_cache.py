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
  the definition is read from the database and not kept.
"""

from __future__ import annotations

import threading

from executions.models import Action


class ActionCache:
    def __init__(self) -> None:
        self._entries: dict[int, tuple[str, Action]] = {}
        self._lock = threading.Lock()

    def get(self, action_id: int, config: str | None) -> Action:
        """The action with its pack, as of ``config`` or newer. The object
        is shared by every caller: read it, never change it."""
        entry = self._entries.get(action_id)
        if entry is not None and config and entry[0] == config:
            return entry[1]
        action = Action.objects.select_related("pack").get(pk=action_id)
        if config:
            self.put(action, config)
        return action

    def put(self, action: Action, config: str) -> None:
        """Keep ``action`` (read after ``config`` was stored) under ``config``."""
        if config:
            with self._lock:
                self._entries[action.pk] = (config, action)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = ActionCache()


def action_cache() -> ActionCache:
    return _cache
