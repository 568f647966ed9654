"""Fixed integer front ends: feature extraction that is part of the firmware, not learned.

``row_edges``: per row of a binary image, the first and the last fired column and a hit flag
(a pair of priority encoders per row in firmware, hw/common/row_edges.v). The torch module feeds
training; the numpy twin is the integer reference the RTL is checked against; both give the
same integers. Features are laid out ``[first_0..first_{H-1}, last_0.., hit_0..]``; a row
without hits gives first = last = 0 and hit = 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def row_edges_bits(width: int) -> int:
    """Bits of one column index (unsigned) for rows ``width`` wide."""
    return max(2, math.ceil(math.log2(width)))


def row_edges_numpy(images: np.ndarray) -> np.ndarray:
    """(N, H, W) 0/1 images -> (N, 3H) int64 features (the integer reference)."""
    x = np.asarray(images) != 0
    if x.ndim != 3:
        raise ValueError(f"row_edges needs (N, rows, columns) images, got shape {x.shape}")
    width = x.shape[2]
    hit = x.any(axis=2)
    first = np.where(hit, x.argmax(axis=2), 0)
    last = np.where(hit, width - 1 - x[:, :, ::-1].argmax(axis=2), 0)
    return np.concatenate([first, last, hit], axis=1).astype(np.int64)


class RowEdges(nn.Module):
    """Torch twin of :func:`row_edges_numpy` on (N, 1, H, W) or (N, H, W) inputs (float out)."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("index", torch.arange(width, dtype=torch.float32), persistent=False)
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x[:, 0]
        fired = (x > 0).float()
        hit = fired.amax(-1)
        last = (fired * self.index).amax(-1)
        first = (self.width - (fired * (self.width - self.index)).amax(-1)) * hit
        return torch.cat([first, last, hit], dim=1)


class FrontEndNet(nn.Module):
    """A fixed front end followed by the learned network (``net``, what QONNX exports)."""

    def __init__(self, front_end: nn.Module, net: nn.Module):
        super().__init__()
        self.front_end = front_end
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.front_end(x))
