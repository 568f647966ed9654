"""Anomaly scores of a trained autoencoder beside the plain reconstruction error.

A reconstruction error has a complexity bias: jets with few lit pixels and one hard core
(dark photons) are reconstructed *better* than the background and rank below it, jets with
many prongs rank above it whatever they are. The scores here (names in :data:`SCORES`) are
fitted on the events the autoencoder was trained on (the background, or in a contamination
study the background plus its unknown signal; never the test events):

* ``error``: the mean squared reconstruction error (:func:`trigkit.learn.models.anomaly_score`).
* ``error_vs_complexity``: the log error minus the log error *expected for a jet of that
  complexity*, in units of the fit's residual spread (:class:`ComplexityNormaliser`). The
  complexity is the Shannon entropy of the image's pixel distribution
  (:func:`image_entropy`); the expectation is a straight-line fit of log error on entropy over
  the validation split (events the network did not train on). A simple jet that is
  reconstructed no better than an equally simple background jet gets a high score.
* ``latent_density``: -log p(z) of the jet's latent code under a Gaussian fitted to the
  training split's latent codes (:class:`LatentGaussian`).

Everything is deterministic (closed-form fits, no random numbers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError

from .models import anomaly_score, reconstruction_target, to_input

#: Score name -> what it is (report tables and plot labels).
SCORES = {
    "error": "reconstruction error",
    "error_vs_complexity": "log error - expected log error at the jet's entropy (in sigma)",
    "latent_density": "-log p(z) of the latent code (Gaussian fit)",
}
#: Events per forward pass.
BATCH = 2048


def image_entropy(images: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each image's pixel distribution p_i = x_i / sum x (all
    channels): 0 for one lit pixel, log(n) for n equal pixels; 0 for an empty image."""
    x = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    if (x < 0).any():
        raise TrigkitError("image_entropy: images must be non-negative (pixel pT)")
    tot = x.sum(axis=1, keepdims=True)
    p = x / np.where(tot > 0, tot, 1.0)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=1)


@dataclass(frozen=True)
class ComplexityNormaliser:
    """log(error) against the expectation a + b * complexity of background jets, divided by
    the residual RMS of that fit (``error_vs_complexity``)."""

    slope: float
    offset: float
    scale: float
    n_fit: int

    @classmethod
    def fit(cls, error: np.ndarray, complexity: np.ndarray) -> ComplexityNormaliser:
        """Least-squares line of log(error) on complexity over background jets."""
        e, c = _pair(error, complexity, "ComplexityNormaliser.fit")
        if len(e) < 3 or np.ptp(c) == 0:
            raise TrigkitError(f"ComplexityNormaliser.fit needs at least 3 jets of different "
                               f"complexity; got {len(e)}")
        slope, offset = np.polyfit(c, np.log(e), 1)
        resid = np.log(e) - (slope * c + offset)
        scale = float(np.sqrt(np.mean(resid ** 2))) or 1.0
        return cls(float(slope), float(offset), scale, int(len(e)))

    def score(self, error: np.ndarray, complexity: np.ndarray) -> np.ndarray:
        """(log error - expected log error at this complexity) / residual RMS."""
        e, c = _pair(error, complexity, "ComplexityNormaliser.score")
        return (np.log(e) - (self.slope * c + self.offset)) / self.scale


def _pair(error: np.ndarray, complexity: np.ndarray, who: str) -> tuple[np.ndarray, np.ndarray]:
    e = np.asarray(error, dtype=np.float64).ravel()
    c = np.asarray(complexity, dtype=np.float64).ravel()
    if e.shape != c.shape:
        raise TrigkitError(f"{who}: {len(e)} errors for {len(c)} complexities")
    return np.maximum(e, 1e-300), c


@dataclass(frozen=True)
class LatentGaussian:
    """A full-covariance Gaussian over latent codes; ``score`` is -log p(z) (``latent_density``)."""

    mean: np.ndarray
    precision: np.ndarray
    log_norm: float
    n_fit: int

    @classmethod
    def fit(cls, latents: np.ndarray, ridge: float = 1e-6) -> LatentGaussian:
        """Mean and covariance (plus ``ridge`` times the mean variance on the diagonal)."""
        z = np.asarray(latents, dtype=np.float64)
        if z.ndim != 2 or len(z) <= z.shape[1]:
            raise TrigkitError(f"LatentGaussian.fit needs more events than latent dimensions; "
                               f"got shape {z.shape}")
        cov = np.cov(z, rowvar=False)
        cov = cov + ridge * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
        sign, logdet = np.linalg.slogdet(cov)
        if sign <= 0:
            raise TrigkitError("LatentGaussian.fit: the latent covariance is not positive")
        return cls(z.mean(axis=0), np.linalg.inv(cov),
                   float(0.5 * (logdet + len(cov) * np.log(2 * np.pi))), len(z))

    def score(self, latents: np.ndarray) -> np.ndarray:
        """-log p(z) of each code."""
        d = np.asarray(latents, dtype=np.float64) - self.mean
        return 0.5 * np.einsum("ij,jk,ik->i", d, self.precision, d) + self.log_norm


def encode(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The latent code of an autoencoder with an ``encoder`` (on its reconstruction target)."""
    if not hasattr(model, "encoder"):
        raise TrigkitError(f"{type(model).__name__} has no encoder; latent scores need an "
                           "autoencoder (architecture.kind: autoencoder)")
    return model.encoder(reconstruction_target(model, x))


def errors_and_latents(model: nn.Module, card: ModelCard, images: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Reconstruction error (N,) and latent code (N, latent_dim) of every image, float64."""
    errs, codes = [], []
    with torch.no_grad():
        for s in range(0, len(images), BATCH):
            x = to_input(images[s:s + BATCH], card)
            errs.append(anomaly_score(model, x).double().numpy())
            codes.append(encode(model, x).double().numpy())
    if not errs:
        return np.zeros(0), np.zeros((0, card.architecture.latent_dim))
    return np.concatenate(errs), np.concatenate(codes)


@dataclass(frozen=True)
class AnomalyScorer:
    """Every score of :data:`SCORES` for one trained autoencoder (see :func:`fit_scorer`)."""

    model: nn.Module
    card: ModelCard
    complexity: ComplexityNormaliser
    latent: LatentGaussian

    def scores(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Score name -> (N,) scores (higher = more anomalous)."""
        err, z = errors_and_latents(self.model, self.card, images)
        return {"error": err,
                "error_vs_complexity": self.complexity.score(err, image_entropy(images)),
                "latent_density": self.latent.score(z)}

    def summary(self) -> dict:
        """The fitted parameters (for report.json)."""
        c = self.complexity
        return {"complexity": "image entropy [nats]",
                "log_error_slope": c.slope, "log_error_offset": c.offset,
                "log_error_residual_rms": c.scale, "complexity_fit_events": c.n_fit,
                "latent_fit_events": self.latent.n_fit}


def fit_scorer(model: nn.Module, card: ModelCard, train_images: np.ndarray,
               val_images: np.ndarray) -> AnomalyScorer:
    """Fit the scores on the autoencoder's own data: the complexity expectation on
    ``val_images`` (not trained on), the latent Gaussian on ``train_images``. Pass only the
    events the autoencoder was trained and validated on, never test events."""
    err_val, _ = errors_and_latents(model, card, val_images)
    _, z_train = errors_and_latents(model, card, train_images)
    return AnomalyScorer(model, card, ComplexityNormaliser.fit(err_val,
                                                               image_entropy(val_images)),
                         LatentGaussian.fit(z_train))
