"""Sparse images as sets of hit pixels: :func:`hit_sets` lists them, :class:`PointCodec` turns
them into the standardised point features of :mod:`trigkit.learn.pixel_gan` and back into
images, and computes differentiable jet observables from the points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from trigkit.core.errors import TrigkitError

#: Pixels at or below this value (in the images' units) are empty (the calorimeter toy's
#: gamma smearing leaves denormal values such as 1e-45 GeV).
EMPTY_BELOW = 1e-6
#: Jet observables the critic sees (:meth:`PointCodec.observables`).
N_OBSERVABLES = 5


def hit_sets(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hit pixels of ``images`` (N, C, H, W) >= 0: rows, columns (N, K) int, channel
    values (N, K, C) and a mask (N, K) bool, K the largest multiplicity (at least 1)."""
    x = np.asarray(images, dtype=np.float32)
    total = x.sum(axis=1)
    hit = total > EMPTY_BELOW
    counts = hit.sum(axis=(1, 2))
    k = max(1, int(counts.max()) if len(counts) else 1)
    n, c = len(x), x.shape[1]
    rows = np.zeros((n, k), np.int64)
    cols = np.zeros((n, k), np.int64)
    values = np.zeros((n, k, c), np.float32)
    mask = np.arange(k)[None] < counts[:, None]
    jet, r, q = np.nonzero(hit)  # row-major, so each jet's hits are contiguous
    slot = np.arange(len(jet)) - np.repeat(np.cumsum(counts) - counts, counts)
    rows[jet, slot], cols[jet, slot] = r, q
    values[jet, slot] = x[jet, :, r, q]
    return rows, cols, values, mask


class PointCodec(nn.Module):
    """Scales between hit sets and the networks' point features, fitted on training images.

    Point features: (row, column) in units of 4 pixels from the image centre, the log of the
    point's share of the image sum (standardised), channel shares scaled to [-1, 1] (C > 1),
    and the log image sum (standardised; the same for every point of a jet)."""

    def __init__(self, shape: Sequence[int], pixel_size: float):
        super().__init__()
        self.shape = tuple(int(v) for v in shape)
        self.pixel_size = float(pixel_size)
        for name in ("share_mean", "share_std", "sum_mean", "sum_std"):
            self.register_buffer(name, torch.tensor(0.0))
        self.register_buffer("counts", torch.zeros(1, dtype=torch.long))

    @property
    def n_features(self) -> int:
        return 4 + (self.shape[0] if self.shape[0] > 1 else 0)

    @property
    def max_points(self) -> int:
        return int(self.counts.max())

    def fit(self, images: np.ndarray) -> None:
        _, _, values, mask = hit_sets(images)
        pt = values.sum(axis=2)
        total = pt.sum(axis=1)
        if (mask.sum(axis=1) == 0).any():
            raise TrigkitError("pixel WGAN-GP: some training images are empty (no pixel above "
                               f"{EMPTY_BELOW:g}); remove them")
        share = np.log(pt[mask] / np.repeat(total, mask.sum(axis=1)))
        self.share_mean.fill_(float(share.mean()))
        self.share_std.fill_(float(share.std()) or 1.0)
        self.sum_mean.fill_(float(np.log(total).mean()))
        self.sum_std.fill_(float(np.log(total).std()) or 1.0)
        self.counts = torch.from_numpy(mask.sum(axis=1).astype(np.int64))

    def encode(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Point features (N, K, F) with integer positions, and the mask (N, K)."""
        rows, cols, values, mask = hit_sets(images)
        pt = values.sum(axis=2)
        total = pt.sum(axis=1, keepdims=True)
        centre = (np.array(self.shape[1:]) - 1) / 2.0
        f = [(rows - centre[0]) / 4.0, (cols - centre[1]) / 4.0,
             (np.log(np.where(mask, pt, 1.0) / total) - float(self.share_mean))
             / float(self.share_std)]
        if self.shape[0] > 1:
            f += [2.0 * values[..., c] / np.where(mask, pt, 1.0) - 1.0
                  for c in range(self.shape[0])]
        f.append(np.broadcast_to((np.log(total) - float(self.sum_mean)) / float(self.sum_std),
                                 rows.shape))
        points = np.stack(f, axis=2).astype(np.float32) * mask[..., None]
        return torch.from_numpy(points), torch.from_numpy(mask)

    def point_pt(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """pT (image units) of every point (N, K), 0 where masked."""
        total = torch.exp(points[:, :1, -1] * self.sum_std + self.sum_mean)
        return torch.exp(points[..., 2] * self.share_std + self.share_mean) * total * mask

    def observables(self, points: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Differentiable (N, 5): log image sum, log(1 + mass), log(width + 0.001), channel-0
        share, multiplicity / 16, of massless deposits at the points' (eta, phi)."""
        eta = points[..., 0] * 4.0 * self.pixel_size
        phi = points[..., 1] * 4.0 * self.pixel_size
        pt = self.point_pt(points, mask)
        s = pt.sum(dim=1) + 1e-12
        e, pz = (pt * torch.cosh(eta)).sum(1), (pt * torch.sinh(eta)).sum(1)
        px, py = (pt * torch.cos(phi)).sum(1), (pt * torch.sin(phi)).sum(1)
        m2 = (e**2 - px**2 - py**2 - pz**2).clamp_min(0.0)
        c_eta, c_phi = (pt * eta).sum(1) / s, (pt * phi).sum(1) / s
        dr = torch.sqrt((eta - c_eta[:, None]) ** 2 + (phi - c_phi[:, None]) ** 2 + 1e-12)
        width = (pt * dr).sum(1) / s
        share0 = ((pt * (points[..., 3] + 1) / 2).sum(1) / s if self.shape[0] > 1
                  else torch.ones_like(s))
        return torch.stack([(torch.log(s) - self.sum_mean) / self.sum_std,
                            0.5 * torch.log(m2 + 1.0), torch.log(width + 1e-3), share0,
                            mask.sum(1) / 16.0], dim=1)

    def decode(self, points: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """Images (N, C, H, W): points rounded onto the grid (clipped to it), deposits in the
        same pixel added."""
        c, h, w = self.shape
        p = points.detach().double()
        pt = self.point_pt(p, mask).numpy()
        rows = np.clip(np.rint(p[..., 0].numpy() * 4.0 + (h - 1) / 2.0), 0, h - 1).astype(int)
        cols = np.clip(np.rint(p[..., 1].numpy() * 4.0 + (w - 1) / 2.0), 0, w - 1).astype(int)
        shares = (np.ones_like(pt)[..., None] if c == 1
                  else (p[..., 3:3 + c].numpy() + 1.0) / 2.0)
        out = np.zeros((len(p), c, h, w), np.float64)
        jet = np.repeat(np.arange(len(p)), p.shape[1])
        for ch in range(c):
            np.add.at(out, (jet, ch, rows.ravel(), cols.ravel()), (pt * shares[..., ch]).ravel())
        return out.astype(np.float32)
