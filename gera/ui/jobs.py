"""A long library call run on a worker thread, so a Gradio generator can stream its progress.

The library reports progress through a callback and polls ``should_stop``; a ``BackgroundJob``
turns both into a queue the UI drains between yields, and a stop flag the UI sets when the user
cancels or the page goes away (Gradio closes the generator, whose ``finally`` calls ``stop``).
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Iterator, Optional

from gera.errors import GeraError

Report = Callable[[Any], None]
THREAD_NAME = "gera-background-job"


class Cancelled(GeraError):
    """Raised inside the worker when the user cancelled: it unwinds embedding and training."""

    def __init__(self):
        super().__init__("Cancelled.")


class BackgroundJob:
    """Runs ``work(report, should_stop)`` on a daemon thread.

    ``report(event)`` queues a progress event and raises ``Cancelled`` once stopped, so stages
    that never poll ``should_stop`` (embedding) end at their next progress report too. Past
    ``deadline_s`` seconds the job stops itself the same way and says so (``timed_out``).
    """

    def __init__(self, work: Callable[[Report, Callable[[], bool]], Any],
                 deadline_s: Optional[float] = None):
        self._events: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._deadline = None if deadline_s is None else time.monotonic() + deadline_s
        self.timed_out = False
        self._done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True,
                                        name=THREAD_NAME)
        self._thread.start()

    def _should_stop(self) -> bool:
        if self._deadline is not None and time.monotonic() > self._deadline:
            self.timed_out = True
            self._stop.set()
        return self._stop.is_set()

    def _report(self, event) -> None:
        if self._should_stop():
            raise Cancelled()
        self._events.put(event)

    def _run(self, work) -> None:
        try:
            self.result = work(self._report, self._should_stop)
        except BaseException as err:  # handed to the UI thread, which decides how to show it
            self.error = err
        finally:
            self._done.set()

    def stop(self) -> None:
        self._stop.set()

    def batches(self, every_s: float = 0.5) -> Iterator[list]:
        """Every ``every_s`` seconds until the job ends: the events queued since the last batch."""
        while True:
            finished = self._done.wait(every_s)
            batch = []
            while True:
                try:
                    batch.append(self._events.get_nowait())
                except queue.Empty:
                    break
            yield batch
            if finished:
                return
