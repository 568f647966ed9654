"""Fixed integer front ends: feature extraction that is part of the firmware, not learned.

``row_clusters``: per row of a binary image, the positions of the lowest and the highest
cluster (run of adjacent fired columns), a hit flag and the base-2 logarithm of their
separation. Positions are twice the cluster centre in column units, an exact integer: the
lowest cluster's ``first + end`` (its first column plus its last), the highest cluster's
``start + last``; the log is Mitchell's piecewise-linear log2 of ``sep = right - left + 1`` with
:data:`LOG_FRAC_BITS` fractional bits, also an exact integer: ``16 e + 16 (sep - 2^e) / 2^e``
rounded down, ``e = floor(log2 sep)``. In firmware (hw/common/row_clusters.v) these are four
priority encoders per row (lowest and highest fired column, lowest run end, highest run start),
two adders and a leading-one detector.

Why centres and logs: two muons from a vertex at radius R_v are ``sep_i ~ (R_i - R_v)`` apart in
row i, so differences of log separations depend on R_v alone and a small network only has to
learn a one-dimensional function; cluster centres halve the error a cluster's second strip (a
neighbouring strip fires 25 % of the time) adds to an edge. Measured with a float MLP
256-256-128 on 100k darkphoton events: core sigma 8.6 cm with centres, 10.7 cm with the cluster
edges (first and last fired column).

The torch module feeds training; the numpy twin is the integer reference the RTL is checked
against; both give the same integers. Features are laid out ``[left_0..left_{H-1}, right_..,
hit_.., logsep_..]``; a row without hits gives 0 for all four.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

#: Fractional bits of the log2 separation feature.
LOG_FRAC_BITS = 4
#: Features per row: left centre, right centre, hit, log2 separation.
FEATURES_PER_ROW = 4


def row_clusters_index_bits(width: int) -> int:
    """Bits of one column index (unsigned) for rows ``width`` wide."""
    return max(2, math.ceil(math.log2(width)))


def row_clusters_bits(width: int) -> int:
    """Bits of every feature code (unsigned): a doubled centre, or the log if wider."""
    pos = row_clusters_index_bits(width) + 1
    return max(pos, ((pos + 1) << LOG_FRAC_BITS).bit_length())


def row_clusters_value_bits(rows: int, width: int) -> list[int]:
    """Bits each feature's values need (unsigned), in feature order: a doubled centre, the hit
    flag (1 bit), the log (up to that of the widest separation). Narrower than the uniform
    code width of :func:`row_clusters_bits`, which the firmware's adders can exploit."""
    pos = row_clusters_index_bits(width) + 1
    widest = np.array([2 * (width - 1) + 1])
    log = int(_log2_sep(widest, row_clusters_index_bits(width) + 2)[0]).bit_length()
    return [pos] * rows + [pos] * rows + [1] * rows + [log] * rows


def _log2_sep(sep: np.ndarray, max_exp: int) -> np.ndarray:
    e = sum((sep >= (1 << k)).astype(np.int64) for k in range(1, max_exp + 1))
    return np.where(sep > 0, (e << LOG_FRAC_BITS) + ((sep << LOG_FRAC_BITS) >> e)
                    - (1 << LOG_FRAC_BITS), 0)


def _lowest(mask: np.ndarray) -> np.ndarray:
    return mask.argmax(axis=2).astype(np.int64)


def _highest(mask: np.ndarray) -> np.ndarray:
    return (mask.shape[2] - 1 - mask[:, :, ::-1].argmax(axis=2)).astype(np.int64)


def row_clusters_numpy(images: np.ndarray) -> np.ndarray:
    """(N, H, W) 0/1 images -> (N, 4H) int64 features (the integer reference)."""
    x = np.asarray(images) != 0
    if x.ndim != 3:
        raise ValueError(f"row_clusters needs (N, rows, columns) images, got shape {x.shape}")
    width = x.shape[2]
    after = np.zeros_like(x)
    after[:, :, :-1] = x[:, :, 1:]
    before = np.zeros_like(x)
    before[:, :, 1:] = x[:, :, :-1]
    hit = x.any(axis=2)
    left = np.where(hit, _lowest(x) + _lowest(x & ~after), 0)
    right = np.where(hit, _highest(x) + _highest(x & ~before), 0)
    sep = np.where(hit, right - left + 1, 0)
    log_sep = _log2_sep(sep, row_clusters_index_bits(width) + 2)
    return np.concatenate([left, right, hit, log_sep], axis=1).astype(np.int64)


class RowClusters(nn.Module):
    """Torch twin of :func:`row_clusters_numpy` on (N, 1, H, W) or (N, H, W) inputs (float out,
    integer values: every step is exact in float32 for these sizes)."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("index", torch.arange(width, dtype=torch.float32), persistent=False)
        self.width = width
        self.max_exp = row_clusters_index_bits(width) + 2

    def _lowest(self, mask: torch.Tensor) -> torch.Tensor:
        return self.width - (mask * (self.width - self.index)).amax(-1)

    def _highest(self, mask: torch.Tensor) -> torch.Tensor:
        return (mask * self.index).amax(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x[:, 0]
        fired = (x > 0).float()
        zero = torch.zeros_like(fired[..., :1])
        after = torch.cat([fired[..., 1:], zero], dim=-1)
        before = torch.cat([zero, fired[..., :-1]], dim=-1)
        hit = fired.amax(-1)
        left = (self._lowest(fired) + self._lowest(fired * (1 - after))) * hit
        right = (self._highest(fired) + self._highest(fired * (1 - before))) * hit
        sep = (right - left + 1) * hit
        e = sum((sep >= 2.0**k).float() for k in range(1, self.max_exp + 1))
        one = 2.0**LOG_FRAC_BITS
        log_sep = (e * one + torch.floor(sep * one / 2.0**e) - one) * hit
        return torch.cat([left, right, hit, log_sep], dim=1)


class FrontEndNet(nn.Module):
    """A fixed front end followed by the learned network (``net``, what QONNX exports)."""

    def __init__(self, front_end: nn.Module, net: nn.Module):
        super().__init__()
        self.front_end = front_end
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.front_end(x))
