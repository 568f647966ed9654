"""Random streams and samplers shared by the offline event generators (monojet, electrons)."""

from __future__ import annotations

import zlib

import numpy as np

from trigkit.core.errors import TrigkitError

#: Candidate events drawn per round (fixed so that results do not depend on the request size).
CHUNK = 16384
#: Most candidate rounds before a selection is declared too tight.
MAX_ROUNDS = 10000


def event_stream(seed: int, name: str) -> np.random.Generator:
    """A random stream per (seed, process), so that processes are independent."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TrigkitError(f"seed must be an integer >= 0, got {seed!r}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def check_count(n: int) -> int:
    """``n`` as a number of events (an integer >= 0), or a TrigkitError."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise TrigkitError(f"number of events must be an integer >= 0, got {n!r}")
    return int(n)


def power_law(rng: np.random.Generator, n: int, lo: float, hi: float, index: float
              ) -> np.ndarray:
    """Samples of dN/dx ~ x^-index on [lo, hi] (inverse CDF)."""
    u = rng.random(n)
    if abs(index - 1.0) < 1e-9:
        return lo * (hi / lo) ** u
    a = 1.0 - index
    return (lo**a + u * (hi**a - lo**a)) ** (1.0 / a)
