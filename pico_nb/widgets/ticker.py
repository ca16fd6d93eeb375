"""A background timer for views that refresh themselves, stopped with the view."""

from __future__ import annotations

import threading
from collections.abc import Callable


class Ticker:
    """Call a function every few seconds on a daemon thread until stopped."""

    def __init__(self, interval: float, action: Callable[[], object]) -> None:
        self.interval = interval
        self._action = action
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        """Errors belong to the view's action (which shows them); the timer keeps going."""
        while not self._stopped.wait(self.interval):
            self._action()

    def stop(self) -> None:
        """Stop at the next tick; the thread never outlives its view for long."""
        self._stopped.set()
