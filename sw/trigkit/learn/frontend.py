"""Fixed integer front ends: feature extraction that is part of the firmware, not learned.

``row_edges``: per row of a binary image, the first and the last fired column, a hit flag and
the base-2 logarithm of the span ``last - first + 1`` (Mitchell's piecewise-linear log2 with
:data:`LOG_FRAC_BITS` fractional bits, an exact integer: ``16 e + 16 (span - 2^e) / 2^e``
rounded down, ``e = floor(log2 span)``). Priority encoders per row and a leading-one detector
in firmware (hw/common/row_edges.v). Why the log: two muons from a vertex at radius R_v are
``span_i ~ (R_i - R_v)`` apart in row i, so differences of log spans depend on R_v alone and a
small network only has to learn a one-dimensional function.

The torch module feeds training; the numpy twin is the integer reference the RTL is checked
against; both give the same integers. Features are laid out ``[first_0..first_{H-1}, last_..,
hit_.., logspan_..]``; a row without hits gives 0 for all four.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

#: Fractional bits of the log2 span feature.
LOG_FRAC_BITS = 4
#: Features per row: first, last, hit, log2 span.
FEATURES_PER_ROW = 4


def row_edges_index_bits(width: int) -> int:
    """Bits of one column index (unsigned) for rows ``width`` wide."""
    return max(2, math.ceil(math.log2(width)))


def row_edges_bits(width: int) -> int:
    """Bits of every feature code (unsigned): a column index, or the log span if wider."""
    idx = row_edges_index_bits(width)
    return max(idx, ((idx + 1) << LOG_FRAC_BITS).bit_length())


def _log2_span(span: np.ndarray, max_exp: int) -> np.ndarray:
    e = sum((span >= (1 << k)).astype(np.int64) for k in range(1, max_exp + 1))
    return np.where(span > 0, (e << LOG_FRAC_BITS) + ((span << LOG_FRAC_BITS) >> e)
                    - (1 << LOG_FRAC_BITS), 0)


def row_edges_numpy(images: np.ndarray) -> np.ndarray:
    """(N, H, W) 0/1 images -> (N, 4H) int64 features (the integer reference)."""
    x = np.asarray(images) != 0
    if x.ndim != 3:
        raise ValueError(f"row_edges needs (N, rows, columns) images, got shape {x.shape}")
    width = x.shape[2]
    hit = x.any(axis=2)
    first = np.where(hit, x.argmax(axis=2), 0).astype(np.int64)
    last = np.where(hit, width - 1 - x[:, :, ::-1].argmax(axis=2), 0).astype(np.int64)
    span = np.where(hit, last - first + 1, 0)
    log_span = _log2_span(span, row_edges_index_bits(width) + 1)
    return np.concatenate([first, last, hit, log_span], axis=1).astype(np.int64)


class RowEdges(nn.Module):
    """Torch twin of :func:`row_edges_numpy` on (N, 1, H, W) or (N, H, W) inputs (float out,
    integer values: every step is exact in float32 for these sizes)."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("index", torch.arange(width, dtype=torch.float32), persistent=False)
        self.width = width
        self.max_exp = row_edges_index_bits(width) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x[:, 0]
        fired = (x > 0).float()
        hit = fired.amax(-1)
        last = (fired * self.index).amax(-1)
        first = (self.width - (fired * (self.width - self.index)).amax(-1)) * hit
        span = (last - first + 1) * hit
        e = sum((span >= 2.0**k).float() for k in range(1, self.max_exp + 1))
        one = 2.0**LOG_FRAC_BITS
        log_span = (e * one + torch.floor(span * one / 2.0**e) - one) * hit
        return torch.cat([first, last, hit, log_span], dim=1)


class FrontEndNet(nn.Module):
    """A fixed front end followed by the learned network (``net``, what QONNX exports)."""

    def __init__(self, front_end: nn.Module, net: nn.Module):
        super().__init__()
        self.front_end = front_end
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.front_end(x))
