"""Progress inside long work: every training epoch, shown as the terminal allows.

The trainer only logs one INFO record per epoch (``fmpbench.training.trainer.epoch_log``); how it is
shown is decided here, by the command line: a ``tqdm`` bar per training run when stderr is a terminal,
one line per epoch with ``-v`` (the form for logs and CI), nothing with ``-q`` or by default when
stderr is not a terminal. Only this process's training is shown: ``--jobs`` workers stay silent.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from tqdm import tqdm

EPOCH_LOGGER = "fmpbench.training.trainer"


class EpochBars(logging.Handler):
    """One bar per training run: a record of epoch 1 starts a new bar, a later one advances it."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(logging.INFO)
        self.stream = stream
        self.bar: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        epoch, total = getattr(record, "epoch", None), getattr(record, "max_epochs", None)
        if epoch is None or total is None:
            return
        if self.bar is None or epoch == 1:
            self.close()
            self.bar = tqdm(total=total, desc="training", unit="epoch", leave=False, file=self.stream)
        self.bar.update(epoch - self.bar.n)
        self.bar.set_postfix_str(f"valid AUC {record.valid_auc:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        super().close()


def show_epochs(verbosity: int, stream: TextIO = sys.stderr) -> logging.Handler | None:
    """Attach the epoch display for ``verbosity`` (-1 quiet, 0 default, 1 verbose); returns the handler."""
    logger = logging.getLogger(EPOCH_LOGGER)
    if verbosity < 0 or (verbosity == 0 and not stream.isatty()):
        return None
    handler: logging.Handler
    if verbosity > 0:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("fmpbench: %(message)s"))
    else:
        handler = EpochBars(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # shown here once, not again by a root handler
    return handler


def hide_epochs(handler: logging.Handler | None) -> None:
    """Detach what :func:`show_epochs` attached (tests and library callers run several commands)."""
    if handler is None:
        return
    logger = logging.getLogger(EPOCH_LOGGER)
    logger.removeHandler(handler)
    handler.close()
    if not logger.handlers:
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
