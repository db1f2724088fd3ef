"""Why requests were rejected, in one console line: the reasons grouped, one example of each with its fix.

A run whose every request was rejected has no latencies at all; this line says so and what to change.
"""
from __future__ import annotations

import re

import pandas as pd

SHOWN_REASONS = 3


def rejection_summary(frame: pd.DataFrame) -> str | None:
    """None when no request was rejected; else e.g. 'every request (20 of 20) was rejected: 20 x ...'."""
    status = frame["status"].astype("string").fillna("")
    rejected = status[status.str.startswith("rejected")]
    if rejected.empty:
        return None
    # requests differ only in their numbers: group by the reason with the numbers blanked out
    kinds = rejected.map(lambda s: re.sub(r"[\d.,]+", "#", s))
    groups = kinds.groupby(kinds, sort=False).size().sort_values(ascending=False, kind="stable")
    shown = "; ".join(f"{count:,} x like \"{rejected[kinds == kind].iloc[0]}\""
                      for kind, count in groups.head(SHOWN_REASONS).items())
    more = f"; and {len(groups) - SHOWN_REASONS} other reasons" if len(groups) > SHOWN_REASONS else ""
    total, count = len(frame), len(rejected)
    head = (f"every request ({count:,} of {total:,}) was rejected, so the run measured nothing"
            if count == total else f"{count:,} of {total:,} requests were rejected")
    return f"{head}: {shown}{more}"
