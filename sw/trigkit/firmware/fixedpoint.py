"""Integer arithmetic of power-of-two fixed point, shared by the reference, hls and RTL paths."""

from __future__ import annotations

import math

import numpy as np


def po2_exponent(scale: float) -> int | None:
    """``e`` with ``scale == 2**e`` exactly, or None (not a positive finite power of two)."""
    if not (scale > 0 and math.isfinite(scale)):
        return None
    mantissa, exp = math.frexp(scale)
    return exp - 1 if mantissa == 0.5 else None


def quant_range(bits: int, signed: bool, narrow: bool = False) -> tuple[int, int]:
    """(lowest, highest) integer of a QONNX Quant node with these settings."""
    if signed:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return (lo + 1 if narrow else lo), hi
    return 0, (1 << bits) - 1 - (1 if narrow else 0)


def round_shift(x: np.ndarray, k: int) -> np.ndarray:
    """round(x / 2**k) with ties to even, exactly, for integer ``x`` (k >= 0)."""
    if k <= 0:
        return x << (-k) if k < 0 else x
    q = x >> k  # floor
    rem = x - (q << k)
    half = 1 << (k - 1)
    up = (rem > half) | ((rem == half) & ((q & 1) == 1))
    return q + up
