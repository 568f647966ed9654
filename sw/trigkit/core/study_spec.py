"""The study sections of a model card's ``evaluation``: the resonance search of the dijet toy
(``hunt``), the signal contamination and the DisCo strength of an anomaly search
(``contamination``, ``decorrelation``) and the generated-sample augmentation of a classifier
(``augmentation``)."""

from __future__ import annotations

from dataclasses import dataclass

from .config import require_range
from .errors import ConfigError


@dataclass(frozen=True)
class HuntSpec:
    """A resonance search on the dijet toy (``source: dijet``): signal region (SR, the
    generator's ``sr``) and sidebands (SB, the rest of its mass range), classifier or density
    ratio, cut, bump hunt on the mass.

    Attributes:
        fraction: injected signal fraction (signal / background events in the whole range) of
            the card's own training (the scan below retrains at each value).
        fractions: injected signal fractions of the scan (significance before and after).
        folds: k of the k-fold CWoLa training (every event is scored by a model that did not
            see it).
        keep: fractions of the SR events kept by the cut on the score, one table each.
        bins: mass bins of the bump hunt (a smooth fit to the sidebands, extrapolated to SR).
        background_samples: events drawn from the sideband density in SR (ANODE) to estimate
            the background efficiency of the cut.
        epochs: training epochs of each scan model (the card's own training uses
            ``training.epochs``).
    """

    fraction: float = 0.01
    fractions: tuple[float, ...] = (0.0, 0.001, 0.002, 0.004, 0.008, 0.016)
    folds: int = 5
    keep: tuple[float, ...] = (0.1, 0.02)
    bins: int = 36
    background_samples: int = 200000
    epochs: int = 10

    def validate(self) -> None:
        require_range("evaluation.hunt.folds", self.folds, 2, 20)
        require_range("evaluation.hunt.bins", self.bins, 6, 1000)
        require_range("evaluation.hunt.epochs", self.epochs, 1, 10000)
        for f in (self.fraction, *self.fractions):
            require_range("evaluation.hunt.fractions", f, 0.0, 1.0)
        for k in self.keep:
            require_range("evaluation.hunt.keep", k, 0.0, 1.0, lo_open=True)


@dataclass(frozen=True)
class ContaminationSpec:
    """Signal contamination of an anomaly search (``task: anomaly``): the same autoencoder
    retrained on its background plus a fraction of one signal class, each evaluated on the
    card's held-out test events (AUC and mass sculpting versus contamination).

    Attributes:
        signals: classes of ``data.classes`` mixed in, one study each (not the background).
        fractions: signal share of the training and validation events, each in [0, 0.5).
        epochs: training epochs of each study model (0: the card's ``training.epochs``).
    """

    signals: tuple[str, ...] = ()
    fractions: tuple[float, ...] = (0.0, 0.01, 0.05, 0.1)
    epochs: int = 0

    def validate(self) -> None:
        if not self.signals:
            raise ConfigError("evaluation.contamination.signals must name at least one signal "
                              "class of data.classes")
        if len(set(self.signals)) != len(self.signals):
            raise ConfigError(f"evaluation.contamination.signals {list(self.signals)} repeats "
                              "a class")
        if not self.fractions:
            raise ConfigError("evaluation.contamination.fractions must list at least one "
                              "signal fraction, e.g. [0, 0.01, 0.05, 0.1]")
        for f in self.fractions:
            require_range("evaluation.contamination.fractions", f, 0.0, 0.5, hi_open=True)
        if len(set(self.fractions)) != len(self.fractions):
            raise ConfigError(f"evaluation.contamination.fractions {list(self.fractions)} "
                              "repeats a value")
        require_range("evaluation.contamination.epochs", self.epochs, 0, 10000)


@dataclass(frozen=True)
class DecorrelationSpec:
    """DisCo strength of an anomaly search (``task: anomaly``): the autoencoder retrained with
    each penalty ``lambdas`` (``training.disco_lambda``) on the card's events; the one shipped
    is the *smallest* whose plain reconstruction error keeps ``target_inv_jsd`` on the
    background events of the validation split (the background alone decides, as it would on
    data), and every lambda is evaluated on the test events with every score.

    Attributes:
        lambdas: DisCo penalties to train, each > 0.
        target_inv_jsd: 1/JSD of the background mass at 50 % background efficiency that the
            chosen lambda must reach on the validation events.
        epochs: training epochs of each study model (0: the card's ``training.epochs``).
    """

    lambdas: tuple[float, ...] = ()
    target_inv_jsd: float = 20.0
    epochs: int = 0

    def validate(self) -> None:
        if not self.lambdas:
            raise ConfigError("evaluation.decorrelation.lambdas must list at least one DisCo "
                              "penalty, e.g. [0.0005, 0.001, 0.002]")
        for lam in self.lambdas:
            require_range("evaluation.decorrelation.lambdas", lam, 0.0, lo_open=True)
        if len(set(self.lambdas)) != len(self.lambdas):
            raise ConfigError(f"evaluation.decorrelation.lambdas {list(self.lambdas)} repeats "
                              "a value")
        require_range("evaluation.decorrelation.target_inv_jsd", self.target_inv_jsd, 0.0,
                      lo_open=True)
        require_range("evaluation.decorrelation.epochs", self.epochs, 0, 10000)


@dataclass(frozen=True)
class AugmentationSpec:
    """Generated-sample augmentation study of a classifier (``task: classification``): the
    card's network trained on its N real training events of the generated class, on N real
    + k x N generated ones (for each k of ``factors``) and on 2N real ones (the extra N from
    an independent sample of the same generator), each with ``seeds`` training seeds, all
    evaluated on the card's real test events (AUC and background rejection).

    Attributes:
        generated_from: the generative card whose samples are added (trained on this card's
            training events of one class).
        factors: generated events per real event of that class, one row each.
        seeds: training seeds per row (the spread is reported).
        epochs: training epochs of each study model (0: the card's ``training.epochs``).
    """

    generated_from: str = ""
    factors: tuple[int, ...] = (1, 4)
    seeds: int = 3
    epochs: int = 0

    def validate(self) -> None:
        if not self.generated_from:
            raise ConfigError("evaluation.augmentation.generated_from must name a generative "
                              "model card, e.g. jet_wgan_gp")
        if not self.factors:
            raise ConfigError("evaluation.augmentation.factors must list at least one factor, "
                              "e.g. [1, 4]")
        for k in self.factors:
            require_range("evaluation.augmentation.factors", k, 1, 100)
        require_range("evaluation.augmentation.seeds", self.seeds, 1, 20)
        require_range("evaluation.augmentation.epochs", self.epochs, 0, 10000)
