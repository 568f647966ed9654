"""What every evaluator shares: network outputs on a batch of inputs, softmax."""

from __future__ import annotations

import numpy as np
import torch

from trigkit.learn.models import to_input

EVAL_BATCH = 2048


def predict_outputs(model, card, images: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    """Raw network outputs (logits, or the regression value in target units) for uint8 images."""
    outs = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            outs.append(model(to_input(images[s:s + batch], card)).float().numpy())
    out = np.concatenate(outs) if outs else np.zeros((0, card.n_outputs), np.float32)
    if card.task == "regression":
        return out[:, 0].astype(np.float64) * card.data.target_scale
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    # float64: cuts placed just above a score (np.nextafter) must not round back in float32
    logits = np.asarray(logits, dtype=np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
