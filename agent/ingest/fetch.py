"""Retries for ingestion: exponential backoff with jitter. Fetching itself (conditional GETs,
per-host politeness, one whole-request deadline, the size cap, public addresses only) is the one
fetch path chat `/feed` uses too: agent/web.py.
"""

from __future__ import annotations

import random


def backoff_delay(failures: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before the next try after `failures` consecutive failures: exponential, capped, with
    "equal jitter" (half fixed, half random) so that many sources failing together spread out."""
    ceiling = min(max_s, base_s * 2 ** max(failures - 1, 0))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)
