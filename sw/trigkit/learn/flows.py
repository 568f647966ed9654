"""Conditional normalizing flows (zuko): the density of table features given a condition.

:class:`ConditionalFlow` reads rows whose last column is the condition (e.g. a scaled mass)
and the other columns the features; ``forward`` returns each row's negative log-density
-log p(features | condition), which the shared trainer minimises (task ``density``). A masked
autoregressive flow (zuko ``MAF``) with ``transforms`` affine transforms, each a MADE with the
card's ``dense`` hidden layers.
"""

from __future__ import annotations

import numpy as np
import torch
import zuko
from torch import nn


class ConditionalFlow(nn.Module):
    """p(features | condition) with a zuko MAF; rows are (features..., condition)."""

    def __init__(self, n_features: int, transforms: int, hidden: tuple[int, ...]):
        super().__init__()
        self.n_features = n_features
        self.flow = zuko.flows.MAF(features=n_features, context=1, transforms=transforms,
                                   hidden_features=tuple(hidden))

    def log_prob(self, rows: torch.Tensor) -> torch.Tensor:
        """log p(features | condition) of each row."""
        return self.flow(rows[:, -1:]).log_prob(rows[:, :-1])

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """The negative log-density of each row (the training loss per event)."""
        return -self.log_prob(rows)

    def sample(self, condition: torch.Tensor) -> torch.Tensor:
        """One feature row per condition value (N,) -> (N, features)."""
        return self.flow(condition[:, None]).sample()


def flow_log_prob(model: ConditionalFlow, rows: np.ndarray, batch: int = 8192) -> np.ndarray:
    """log p(features | condition) of every row of a (N, features + 1) array."""
    out = []
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            out.append(model.log_prob(torch.as_tensor(rows[s:s + batch]).float()).double()
                       .numpy())
    return np.concatenate(out) if out else np.zeros(0)


def flow_sample(model: ConditionalFlow, condition: np.ndarray, seed: int,
                batch: int = 8192) -> np.ndarray:
    """Feature rows drawn from the flow at each condition value (seeded)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        with torch.no_grad():
            out = [model.sample(torch.as_tensor(condition[s:s + batch]).float()).double().numpy()
                   for s in range(0, len(condition), batch)]
    finally:
        torch.random.set_rng_state(state)
    return np.concatenate(out) if out else np.zeros((0, model.n_features))
