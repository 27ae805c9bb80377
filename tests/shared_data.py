"""Where the real dataset excerpts are: ``$FMPBENCH_SHARED_DATA``, else ``shared/data`` beside the checkout.

Their licences forbid copying them into the project, so the tests that read them skip without them.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(os.environ.get("FMPBENCH_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
