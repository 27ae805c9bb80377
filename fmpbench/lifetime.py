"""Process lifetime of ``--jobs`` helpers: workers and the ledger's manager die with their driver.

Kept apart from :mod:`fmpbench.grid` (and free of torch) because a spawned manager process imports
the module of its initializer before it can serve: with the initializer in the grid, every
``--jobs N`` run waited 3.5 s for the manager to import torch, the selectors and scikit-learn.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from multiprocessing.managers import SyncManager

_PARENT_WATCHED = False
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def die_with_parent() -> None:
    """End this worker when the process that started it dies (``kill -9`` of the driver, a lost node).

    A killed driver cannot stop its workers, and an orphan blocks on its task pipe forever. On Linux
    the kernel sends SIGKILL at the parent's death (``PR_SET_PDEATHSIG``; it fires when the thread that
    spawned the worker ends, which in ``_LocalPool`` outlives every worker); elsewhere, or if the parent
    died before that was set, a daemon thread notices the re-parenting within a second.
    """
    global _PARENT_WATCHED
    if _PARENT_WATCHED:  # Ray calls the initializer once per task
        return
    _PARENT_WATCHED = True
    parent = multiprocessing.parent_process()
    parent_pid = parent.pid if parent is not None and parent.pid is not None else os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no prctl: the thread below still works

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="fmpbench-parent-watch", daemon=True).start()


def ledger_manager() -> SyncManager:
    """A started manager process for the ``--jobs`` workers' retrain ledger, ended with this process
    (even by ``kill -9``) like the workers."""
    manager = SyncManager(ctx=multiprocessing.get_context("spawn"))
    manager.start(die_with_parent)
    return manager
