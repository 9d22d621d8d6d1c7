"""Run one function over many files: here, in local worker processes, or on a Dask cluster.

The dataset-wide commands (``convert``, ``stats``, ``validate``, ``migrate``) hand
:func:`run_each` a picklable per-file function (a module-level function, or a
:func:`functools.partial` of one) and the files. Results come back in input order,
whatever order the files finish in, so a parallel run reports exactly what a serial
run does. The function must catch each file's own errors and return them as results;
an exception that escapes it stops the run, as it would serially.

A worker process that dies (killed, out of memory, a crash in a C library) loses no
output: every writer in mlarray replaces its target atomically. The file it was
working on is reported with the ``lost`` callback (code :data:`WORKER_LOST`); the other
files complete. Locally, the files that were running when a worker died are run again
one at a time, each alone in a new process, so a file that takes its worker down is
told from its innocent neighbours. On a ``dask.distributed`` cluster the scheduler
retries a task whose worker died up to ``distributed.scheduler.allowed-failures``
times, then gives up on it.

``distributed`` is imported only when a scheduler address is given. No typer or rich here.
"""

from __future__ import annotations

import functools
import multiprocessing
import operator
import os
import re
import shutil
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Generic, TypeVar

from mlarray.errors import InvalidArgumentError, MissingDependencyError, MLArrayError
from mlarray.storage.io import TMP_PREFIX, temporary_suffix, writer_alive, writer_pid

T = TypeVar("T")
R = TypeVar("R")

WORKER_LOST = "WORKER_LOST"
"""The code of a file whose worker process died before the file was finished."""


class WorkerLostError(MLArrayError, RuntimeError):
    """A file of a parallel job whose worker process died before finishing it (a job result, never raised here)."""

    code = WORKER_LOST


LOST_MESSAGE = "the worker process died while working on this file (killed, out of memory or crashed); {detail}"


class _Run(Generic[T, R]):
    """One :func:`run_each` call: the function, the files, the callbacks and the results so far."""

    def __init__(
        self,
        func: Callable[[T], R],
        items: Sequence[T],
        lost: Callable[[T, str], R],
        on_start: Callable[[int, T], None] | None,
        on_done: Callable[[int, T, R], None] | None,
        cleanup: Callable[[T], None] | None = None,
    ) -> None:
        self.func, self.items, self.lost, self.cleanup = func, items, lost, cleanup
        self.on_start, self.on_done = on_start, on_done
        self.results: dict[int, R] = {}

    def start(self, index: int) -> None:
        if self.on_start is not None:
            self.on_start(index, self.items[index])

    def done(self, index: int, result: R) -> None:
        self.results[index] = result
        if self.on_done is not None:
            self.on_done(index, self.items[index], result)

    def clean(self, index: int) -> None:
        if self.cleanup is not None:
            self.cleanup(self.items[index])

    def give_up(self, index: int, detail: str) -> None:
        self.clean(index)
        self.done(index, self.lost(self.items[index], LOST_MESSAGE.format(detail=detail)))

    def ordered(self) -> list[R]:
        return [self.results[i] for i in range(len(self.items))]


def run_each(
    func: Callable[[T], R],
    items: Sequence[T],
    *,
    lost: Callable[[T, str], R],
    jobs: int = 1,
    scheduler: str | None = None,
    on_start: Callable[[int, T], None] | None = None,
    on_done: Callable[[int, T, R], None] | None = None,
    cleanup: Callable[[T], None] | None = None,
    name: str = "mlarray",
) -> list[R]:
    """``[func(item) for item in items]``, run here, in ``jobs`` local processes, or on a Dask cluster.

    Parameters
    ----------
    func : callable
        The per-file function. For ``jobs > 1`` or a ``scheduler`` it and the items
        must pickle (a module-level function or a ``functools.partial`` of one).
    items : sequence
        The files (or whatever ``func`` takes), in report order.
    lost : callable
        ``lost(item, message)`` builds the result of an item whose worker died.
    jobs : int
        Local worker processes; 1 (the default) runs everything here, one after another.
    scheduler : str, optional
        Address of a ``dask.distributed`` scheduler (``tcp://host:8786``); its workers
        run the items and must see the same paths. Overrides ``jobs``.
    on_start, on_done : callable, optional
        Progress callbacks ``on_start(index, item)`` when an item is handed to a worker
        (again if it is retried) and ``on_done(index, item, result)`` as results arrive.
    cleanup : callable, optional
        ``cleanup(item)``, called here for an item whose worker died before it finished
        (before it runs again, and when it is given up), and, with ``jobs=1``, for the
        item ``func`` raised out of (an interrupt: ``KeyboardInterrupt``, ``SystemExit``)
        before the exception goes on: remove what the stopped work left behind, e.g. with
        ``remove_orphans(item, mine=True)``.
    name : str
        Prefix of the task names a Dask dashboard shows.

    Returns
    -------
    list
        One result per item, in the order of ``items``.

    Raises
    ------
    InvalidArgumentError
        ``jobs`` is below 1, or the scheduler cannot be reached.
    MissingDependencyError
        A scheduler is given but ``distributed`` is not installed (``mlarray[dask]``).
    """
    if isinstance(jobs, bool) or not hasattr(type(jobs), "__index__") or operator.index(jobs) < 1:
        raise InvalidArgumentError(f"jobs must be an integer of at least 1, got {jobs!r}")
    jobs = operator.index(jobs)
    run = _Run(func, items, lost, on_start, on_done, cleanup)
    if scheduler is not None:
        _on_cluster(run, scheduler, name)
    elif jobs == 1:
        for index, item in enumerate(items):
            run.start(index)
            try:
                result = func(item)
            except BaseException:
                if cleanup is not None:
                    cleanup(item)  # an interrupt may stop a save where its own cleanup cannot run
                raise
            run.done(index, result)
    else:
        _in_processes(run, jobs)
    return run.ordered()


# --------------------------------------------------------------------------- local processes


def _in_processes(run: _Run[Any, Any], jobs: int) -> None:
    """Run every item in a pool of ``jobs`` processes; after a worker died, its suspects alone."""
    queue = deque(range(len(run.items)))
    context = _context(run.func)
    while queue:
        suspects = _pool(run, queue, jobs, context)
        for index in suspects:
            run.clean(index)  # a broken pool stops all its workers: each suspect may have left temporary files
            if _pool(run, deque([index]), 1, context):
                run.give_up(index, "it was run again alone and its worker died again")


def _context(func: Callable[..., Any]) -> Any:
    """Where worker processes come from: never a fork of this (threaded) process.

    A fork server (POSIX) forks each worker from a clean single-threaded process that
    imported ``func``'s module once, so a new pool after a worker died starts quickly;
    elsewhere workers are spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    target = func.func if isinstance(func, functools.partial) else func
    module = getattr(target, "__module__", None)
    if module and module != "__main__":
        context.set_forkserver_preload([module])  # takes effect when this process starts its fork server
    return context


def _pool(run: _Run[Any, Any], queue: deque[int], workers: int, context: Any) -> list[int]:
    """Run items from ``queue`` with at most ``workers`` in flight; returns those in flight if the pool broke."""
    in_flight: dict[Future[Any], int] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        while queue or in_flight:
            while queue and len(in_flight) < workers:
                index = queue.popleft()
                run.start(index)
                in_flight[pool.submit(run.func, run.items[index])] = index
            finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    result = future.result()
                except BrokenProcessPool:
                    return sorted(in_flight.values())
                run.done(in_flight.pop(future), result)
    return []


# --------------------------------------------------------------------------- dask.distributed


def _on_cluster(run: _Run[Any, Any], address: str, name: str) -> None:
    """Run every item as one task on the cluster at ``address``; a task that killed its workers is lost."""
    try:
        import distributed as _distributed
    except ImportError as exc:
        raise MissingDependencyError(
            f'--scheduler needs dask.distributed: pip install "mlarray[dask]" ({exc})', module="distributed"
        ) from None
    distributed: Any = _distributed  # untyped
    try:
        client = distributed.Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InvalidArgumentError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None
    token = uuid.uuid4().hex[:8]
    with client:
        futures: dict[Any, int] = {}
        for index, item in enumerate(run.items):
            run.start(index)
            future = client.submit(run.func, item, key=f"{name}-{token}-{index}", pure=False, retries=0)
            futures[future] = index
        for future in distributed.as_completed(list(futures), loop=client.loop):
            index = futures.pop(future)
            try:
                result = future.result()
            except distributed.KilledWorker as exc:
                run.give_up(index, f"the scheduler gave up on it ({exc})")
                continue
            finally:
                # forget the task at once: had its worker died later, the scheduler would run it again
                # (and write its output again) to recompute a result that is already here
                future.release()
            run.done(index, result)


def is_temporary(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names an unfinished save: a ``.mla-tmp-*`` file or folder (never an input).

    Saves write ``.mla-tmp-<random>-<name>`` (or a ``.mla-tmp-<random>/`` folder holding
    ``<name>``) and rename it over ``<name>`` when complete (:func:`mlarray.storage.atomic_target`);
    what a killed process left keeps that name.
    """
    return Path(path).name.startswith(TMP_PREFIX)


def is_within(path: str | os.PathLike[str], folder: str | os.PathLike[str] | None) -> bool:
    """Whether ``path`` lies inside ``folder`` (after resolving links): an output folder inside an input folder.

    A link loop resolves as far as it can (no error): the command that reads it reports it.
    """
    if folder is None:
        return False
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


def each_once(files: Sequence[Path]) -> list[Path]:
    """``files`` without repeats, in order: a file named twice (``D D/sub``, a glob overlapping a
    folder, ``a.mla ./a.mla``, a link and its target) keeps its first spelling only, so a batch
    neither counts it twice nor rewrites it from two workers at once."""
    seen: set[Any] = set()
    out: list[Path] = []
    for path in files:
        try:
            st = os.stat(path)
            identity: Any = (st.st_dev, st.st_ino)
        except OSError:  # missing or dangling: reported once per spelling that resolves the same
            identity = os.path.realpath(path)
        if identity not in seen:
            seen.add(identity)
            out.append(path)
    return out


def find_mla(root: str | os.PathLike[str]) -> list[Path]:
    """Every ``*.mla`` file under the directory ``root`` (recursively, links to files included), sorted.

    Unfinished saves (:func:`is_temporary`: the files and everything inside the folders)
    are left out: they are no dataset's files, and a command must not take them for one.
    Symbolic links named ``*.mla`` that lead to no file (dangling, or a loop) are kept, so
    the command that reads them reports them; links to directories are not followed.
    """
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not is_temporary(d)]
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith(".mla") and not is_temporary(name) and (path.is_file() or _broken_link(path)):
                found.append(path)
    return sorted(found)


def _broken_link(path: Path) -> bool:
    return path.is_symlink() and not os.path.exists(path)


def _orphan_pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(TMP_PREFIX) + r"(?:[0-9]+\.)?[0-9a-f]+-" + re.escape(temporary_suffix(name)))


def remove_orphans(target: str | os.PathLike[str] | None, *, mine: bool = False) -> None:
    """Remove the temporary files an unfinished save of ``target`` left beside it (a killed writer's).

    Saves write ``.mla-tmp-<pid>.<random>-<name>`` (or a ``.mla-tmp-<pid>.<random>/`` folder
    holding ``<name>``) and rename it over ``target`` when complete; a killed process leaves
    them. Those of a process that still runs (a save in progress) are left alone, unless
    ``mine`` is true and the process is this one: its saves of ``target`` have stopped (an
    interrupt; no other thread of it writes ``target``). When
    ``target`` is a symbolic link, saves write beside the file it leads to, so the
    temporary files of that file are removed too.
    """
    if target is None:
        return
    path = Path(target)
    places = {(path.parent, path.name)}
    real = Path(os.path.realpath(path))
    if real != path.absolute():
        places.add((real.parent, real.name))
    for directory, name in places:
        pattern = _orphan_pattern(name)
        for tmp in directory.glob(f"{TMP_PREFIX}*"):
            if writer_alive(tmp.name) and not (mine and writer_pid(tmp.name) == os.getpid()):
                continue  # a save in progress (another process's writer closing, say), not an orphan
            if tmp.is_file() and pattern.fullmatch(tmp.name):
                tmp.unlink(missing_ok=True)
            elif tmp.is_dir() and (tmp / name).exists():
                shutil.rmtree(tmp, ignore_errors=True)
