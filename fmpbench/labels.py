"""A result row's label: its name plus ``[key=value]`` for every method parameter that is not the default.

One definition for the protocol, which stores the label in each record (``label``), and the report
loader, which derives it for records written before labels were stored. Imports nothing of ours.
"""

from __future__ import annotations

import json
from typing import Any


def canonical(value: Any) -> Any:
    """JSON round trip, so tuples and lists (or numpy scalars) compare equal."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def json_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json_key(value)
    return str(value)


def variant_suffix(params: dict[str, Any], reference: dict[str, Any]) -> str:
    """``[a=1,b=x]`` for the parameters that differ from (or are missing in) ``reference``; "" when none do."""
    params, reference = canonical(params), canonical(reference)
    diffs = [f"{k}={_format_value(v)}" for k, v in sorted(params.items()) if k in reference and reference[k] != v]
    diffs += [f"{k}={_format_value(v)}" for k, v in sorted(params.items()) if k not in reference]
    return f"[{','.join(diffs)}]" if diffs else ""
