"""Process lifetime of ``--jobs`` helpers: where workers come from, and that they and the ledger's
manager die with their driver.

Kept apart from :mod:`fmpbench.grid` (and free of torch) because a spawned manager process imports
the module of its initializer before it can serve: with the initializer in the grid, every
``--jobs N`` run waited 3.5 s for the manager to import torch, the selectors and scikit-learn.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing import forkserver
from multiprocessing.context import BaseContext
from multiprocessing.managers import SyncManager

#: what a worker needs before its first task, imported once by the fork server
WORKER_MODULES = ["fmpbench.grid"]

_PARENT_WATCHED = False
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> None:
    """End this worker when the process that started it dies (``kill -9`` of the driver, a lost node).

    A killed driver cannot stop its workers, and an orphan blocks on its task pipe forever. On Linux
    the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``; it fires when the thread that
    started the worker ends: ``_LocalPool``'s, which outlives every worker, or the fork server's, which
    ends with the driver); elsewhere, or if the parent died before that was set, a daemon thread
    notices the re-parenting, or the driver's end, within a second.
    """
    global _PARENT_WATCHED
    if _PARENT_WATCHED:  # Ray calls the initializer once per task
        return
    _PARENT_WATCHED = True
    parent = multiprocessing.parent_process()  # the driver, also when the fork server forked this worker
    driver = parent.pid if parent is not None and parent.pid is not None else os.getppid()
    started_under = os.getppid()  # the driver, or the fork server (which ends when the driver does)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the thread below still works

    def watch() -> None:
        while os.getppid() == started_under and _alive(driver):
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="fmpbench-parent-watch", daemon=True).start()


def ledger_manager() -> SyncManager:
    """A started manager process for the ``--jobs`` workers' retrain ledger, ended with this process
    (even by ``kill -9``) like the workers."""
    manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
    manager.start(die_with_parent)
    return manager


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's: the pid was reused, but that takes a long-dead driver
        return True
    return True


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """Processes started in here ignore Ctrl-C from birth (a child keeps an ignored SIGINT, and Python
    installs no handler of its own then). Ctrl-C reaches the whole process group; only the driver
    handles it and stops the others, so not even a helper still importing prints a traceback. Signal
    handlers can only be set from the main thread: elsewhere this changes nothing."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if in_main_thread else None
    try:
        yield
    finally:
        if previous is not None:  # None: not the main thread, or a handler installed outside Python
            signal.signal(signal.SIGINT, previous)


def worker_context() -> BaseContext:
    """Where ``--jobs`` workers come from, started if it is not yet: a fork server (POSIX) that imports
    :data:`WORKER_MODULES` once and forks every worker of this process from there, else ``spawn``.

    A spawned worker imported torch, the selectors and scikit-learn for ~5 s before its first task, in
    every grid (each section of a study) and in every worker at once; forked from a started server its
    first task begins within 0.05 s. The server never runs torch, so its children fork
    from a process without OpenMP or CUDA state (its only threads are the pools that OpenBLAS and
    jemalloc start at import, which both rebuild in a forked child; tests run torch, lasso and a
    LAPACK SVD in such workers); it is started with Ctrl-C ignored
    (:func:`sigint_ignored`), which its children inherit, and ends when this process does — so every
    grid after a process's first (a study's sections, a notebook's runs) finds it started.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    with sigint_ignored():
        forkserver.ensure_running()
    return context
