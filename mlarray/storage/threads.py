"""Long-lived helper threads for reads that decode chunks in parallel (:mod:`mlarray.storage.fastread`).

The threads persist between reads, so the per-thread decompression contexts and buffers
they own are made once. When the process cannot start a thread (a thread limit, an
address-space limit), work goes on with the threads it has, down to none (the caller's).
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

Task = TypeVar("Task")


class Helpers:
    """Daemon threads that run jobs from a queue.

    Threads are started on demand; when the process cannot start one (a thread limit, an
    address-space limit), reads go on with the threads it has, down to none.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def available(self, wanted: int) -> int:
        """Start threads up to ``wanted``; return how many there are (at most ``wanted``)."""
        with self._lock:
            while len(self._threads) < wanted:
                thread = threading.Thread(target=self._loop, name="mlarray-read", daemon=True)
                try:
                    thread.start()
                except RuntimeError:
                    break
                self._threads.append(thread)
            return min(wanted, len(self._threads))

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def _loop(self) -> None:
        while True:
            self._jobs.get()()

    def forget(self) -> None:
        """Start afresh: in a forked child (a DataLoader worker), none of the parent's threads
        runs, and its queue and lock may have been in use at the fork."""
        self._jobs = queue.SimpleQueue()
        self._threads = []
        self._lock = threading.Lock()


helpers = Helpers()
if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=helpers.forget)


def address_space_limited() -> bool:
    """An address-space limit (``RLIMIT_AS``) is set: no helper threads then (each reserves a
    stack and may reserve a malloc arena, tens of MiB of address space)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return False
    return resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY


def run_parallel(tasks: Sequence[Task], run: Callable[[Task], None], nthreads: int) -> None:
    """``run`` every task, on this thread and up to ``nthreads - 1`` helpers; re-raise the first error.

    Returns only when no task is running any more, so nothing writes into the result afterwards.
    """
    pending = iter(tasks)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while not errors:
            with lock:
                task = next(pending, None)
            if task is None:
                return
            try:
                run(task)
            except BaseException as exc:  # handed to the caller's thread below
                errors.append(exc)

    started = helpers.available(min(nthreads, len(tasks)) - 1)
    done = threading.Semaphore(0)

    def helper() -> None:
        try:
            work()
        finally:
            done.release()

    for _ in range(started):
        helpers.submit(helper)
    try:
        work()
    finally:
        for _ in range(started):
            done.acquire()
    if errors:
        raise errors[0]
