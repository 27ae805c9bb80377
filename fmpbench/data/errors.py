"""Errors raised by the data layer."""

from __future__ import annotations


class DataError(ValueError):
    """Bad raw input or a corrupt cache.

    The message is always one line that names the file (and line number where there is one) and
    what was wrong, so a user can fix the input without reading a traceback.
    """
