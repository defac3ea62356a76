"""Liveness: a server that cannot answer any more says so, and then ends.

A process that is up but stuck (a model hung inside its runtime, an event loop that never
gets back) still holds its port, so a service manager sees nothing wrong and never
restarts it. The watchdog reads a few ages — how long the oldest model call has taken,
how long since the event loop last ticked — and when one passes the limit, /healthz
answers 503 and, one check later, the process exits with status 70 (EX_SOFTWARE) so that
systemd's `Restart=on-failure` (or Kubernetes) starts it again. Queued jobs resume there.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger("rag.watchdog")

EXIT_STATUS = 70


class Heartbeat:
    """Ticked by the event loop; `age()` says how long ago it last was."""

    def __init__(self):
        self._last = time.monotonic()

    def tick(self) -> None:
        self._last = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self._last


class Watchdog:
    def __init__(
        self,
        ages: dict[str, Callable[[], float]],
        limit: float,
        interval: float = 5.0,
        exit: Callable[[int], None] = os._exit,
    ):
        self.ages = ages
        self.limit = limit
        self.interval = interval
        self._exit = exit
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def problem(self) -> str:
        """What is stuck and for how long ("" when nothing is)."""
        for name, age in self.ages.items():
            seconds = age()
            if seconds > self.limit:
                return f"{name} has not finished for {seconds:.0f} s (limit {self.limit:.0f} s)"
        return ""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        seen = ""
        while not self._stop.wait(self.interval):
            problem = self.problem()
            if problem and seen:  # twice in a row: not a blip between two checks
                log.critical("stuck: %s; exiting so that the service manager restarts it", problem)
                logging.shutdown()
                self._exit(EXIT_STATUS)
                return
            seen = problem
