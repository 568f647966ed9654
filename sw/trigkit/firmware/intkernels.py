"""Compiled kernels of the integer reference, where numpy cannot get there.

Two loops dominate the reference on small dense networks: the integer matrix product and the
requantisation after it (round half to even by a power of two, clip, narrow to the storage
type). numpy has no int8 matrix product and needs five passes over memory for the second;
torch's CPU int8 GEMM and one compiled (numba) loop do each in one. Both are exact: the int8
product sums in int32 (callers check the bound), the shift is integer arithmetic.
"""

from __future__ import annotations

import numba
import numpy as np
import torch


def int8_matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w`` of int8 matrices with int32 sums (exact while every |sum| < 2**31).

    torch's CPU int8 GEMM (oneDNN, VNNI where the CPU has it) runs about three times faster
    than a float32 GEMM of the same integers."""
    a = torch.from_numpy(np.ascontiguousarray(x, dtype=np.int8))
    b = torch.from_numpy(np.ascontiguousarray(w, dtype=np.int8))
    try:
        return torch._int_mm(a, b).numpy()
    except (RuntimeError, NotImplementedError):  # a CPU build without the int8 kernel
        return x.astype(np.int32) @ np.asarray(w, dtype=np.int32)


@numba.njit(nogil=True, cache=False)
def _shift_round_clip(src: np.ndarray, dst: np.ndarray, shift: int, lo: int, hi: int) -> None:
    half = np.int64(1) << (shift - 1)
    for i in range(src.size):
        x = np.int64(src[i])
        q = x >> shift  # floor; then round half to even without overflow
        rem = x - (q << shift)
        q += (rem > half) | ((rem == half) & (q & 1))
        dst[i] = min(max(q, lo), hi)


def requantise(x: np.ndarray, shift: int, lo: int, hi: int, dtype: type) -> np.ndarray:
    """``clip(round_half_even(x / 2**shift), lo, hi)`` of an integer array, as ``dtype``
    (``shift`` >= 1, ``lo``/``hi`` within ``dtype``)."""
    if shift < 1 or x.dtype.kind not in "iu":
        raise ValueError(f"requantise needs an integer array and shift >= 1, got {x.dtype}, "
                         f"{shift}")
    src = np.ascontiguousarray(x)
    out = np.empty(src.shape, dtype)
    _shift_round_clip(src.reshape(-1), out.reshape(-1), shift, lo, hi)
    return out
