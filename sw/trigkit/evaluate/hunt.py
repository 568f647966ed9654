"""Resonance searches on the dijet toy (:mod:`trigkit.offline.dijet`): CWoLa hunting and
ANODE, each beside a bump hunt on the mass alone and a fully supervised classifier, on the
same events, for each injected signal fraction of ``evaluation.hunt.fractions``.

- **bump hunt**: the dijet function p0 (1 - x)^p1 / x^p2 is fitted (Poisson likelihood) to the
  sideband bins of the mass histogram and extrapolated into the signal region (SR);
  significance of n_SR observed events over b_SR expected (:func:`poisson_z`), the fit's own
  uncertainty left out;
- **supervised** (upper bound): a classifier of signal against background trained on the
  separate labelled sample; cut on the data, bump hunt as above;
- **CWoLa**: k-fold classifiers of SR against sidebands (SB) on the data themselves (each event
  scored by the model that did not see it), the same cut and bump hunt;
- **ANODE**: a conditional flow p(x | m) trained on SB data, interpolated into SR, and one
  trained on SR data (k folds); the score is the likelihood ratio R = p_SR / p_SB; the
  background after the cut is b_SR (from the fit) times the fraction of events drawn from the
  SB flow at SR masses that pass it.

Every cut keeps the top ``keep`` fraction of the SR events (threshold per fold). All models
are trained by the shared trainer (:class:`trigkit.learn.train.Trainer`) from sibling cards.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from torch import nn

from trigkit.core.card import ModelCard
from trigkit.core.plots import plot_curves
from trigkit.core.registry import register_evaluator
from trigkit.learn.data import Split, dataset_file
from trigkit.learn.flows import flow_log_prob, flow_sample
from trigkit.learn.metrics import roc_auc
from trigkit.learn.train import Trainer, load_trained_model
from trigkit.offline.dijet import (
    DATA_BACKGROUND,
    DijetConfig,
    features,
    in_sr,
    injected,
    labelled,
    read_dijet_h5,
    scaled_mass,
)

from .common import predict_outputs, softmax

#: Share of a training set held out for validation (early stopping, best checkpoint).
VAL_SHARE = 0.2


def fit_background(counts: np.ndarray, edges: np.ndarray, fit_bins: np.ndarray,
                   sqrt_s: float) -> np.ndarray:
    """Expected counts per bin from the dijet function fitted to the ``fit_bins`` bins."""
    x = 0.5 * (edges[1:] + edges[:-1]) / sqrt_s
    design = np.stack([np.ones_like(x), np.log1p(-x), -np.log(x)], axis=1)
    n, d = counts[fit_bins].astype(np.float64), design[fit_bins]
    start = np.linalg.lstsq(d, np.log(np.maximum(n, 0.5)), rcond=None)[0]

    def nll(p: np.ndarray) -> float:
        log_mu = np.clip(d @ p, -50, 50)
        return float(np.sum(np.exp(log_mu) - n * log_mu))

    best = minimize(nll, start, method="Nelder-Mead",
                    options={"maxiter": 4000, "xatol": 1e-8, "fatol": 1e-8})
    return np.exp(np.clip(design @ best.x, -50, 50))


def bump_hunt(mjj: np.ndarray, cfg: DijetConfig, bins: int) -> dict:
    """Observed and fitted background events in SR and the significance of the excess."""
    edges = np.linspace(cfg.m_min, cfg.m_max, bins + 1)
    counts, _ = np.histogram(mjj, edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    sr_bins = in_sr(centres, cfg)
    if counts[~sr_bins].sum() < 10:  # too few sideband events to fit
        return {"n_sr": int(counts[sr_bins].sum()), "b_sr": float("nan"), "z": float("nan")}
    expected = fit_background(counts, edges, ~sr_bins, cfg.sqrt_s)
    n, b = float(counts[sr_bins].sum()), float(expected[sr_bins].sum())
    return {"n_sr": int(n), "b_sr": b, "z": poisson_z(n, b)}


def poisson_z(n: float, b: float) -> float:
    """Signed likelihood-ratio significance of ``n`` observed events over ``b`` expected:
    sign(n - b) sqrt(2 (n ln(n / b) - (n - b))) (about (n - b) / sqrt(b) for large b)."""
    if not b > 0:
        return float("nan")
    q = 2.0 * ((n * np.log(n / b) if n > 0 else 0.0) - (n - b))
    return float(np.sign(n - b) * np.sqrt(max(q, 0.0)))


def folds_of(n: int, k: int, seed: int) -> np.ndarray:
    """Fold number (0..k-1) of each of ``n`` events, a seeded random assignment."""
    return np.random.default_rng(seed).permutation(np.arange(n) % k)


def train_val(idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``idx`` shuffled (seeded) into training and validation indices."""
    idx = np.random.default_rng(seed).permutation(idx)
    n_val = max(1, int(round(VAL_SHARE * len(idx))))
    return np.sort(idx[n_val:]), np.sort(idx[:n_val])


def fit_model(card: ModelCard, x: np.ndarray, y: np.ndarray, train: np.ndarray,
              val: np.ndarray, out_dir: Path) -> nn.Module:
    """Train ``card`` (a sibling card of the hunt) on rows ``train``, validating on ``val``,
    with the shared trainer (fresh, deterministic); the best checkpoint's model."""
    splits = {name: Split(name, out_dir, idx, y[idx], x[idx])
              for name, idx in (("train", train), ("val", val))}
    Trainer(card, out_dir=out_dir, progress=False, splits=splits, verbose=False).fit(fresh=True)
    return load_trained_model(card, out_dir=out_dir)


def classifier_card(card: ModelCard, tag: str) -> ModelCard:
    """The hunt's classifier (supervised reference, CWoLa): an MLP on the 4 features."""
    dense = list(card.architecture.dense) if card.architecture.kind == "mlp" else [64, 64]
    return card.with_overrides(f"{card.name}_{tag}", {
        "task": "classification", "architecture.kind": "mlp", "architecture.dense": dense,
        "architecture.bayesian": False, "data.input_shape": [4],
        "data.classes": ["class0", "class1"], "evaluation.background": "class0",
        "training.epochs": card.evaluation.hunt.epochs})


def class1_score(card: ModelCard, model: nn.Module, x: np.ndarray) -> np.ndarray:
    """P(class 1) of a two-class classifier."""
    return softmax(predict_outputs(model, card, x))[:, 1]


def fold_thresholds(score: np.ndarray, sr: np.ndarray, fold: np.ndarray, keep: float
                    ) -> dict[int, float]:
    """Per fold the score threshold that keeps the top ``keep`` of its SR events."""
    return {int(f): float(np.quantile(score[(fold == f) & sr], 1.0 - keep))
            for f in np.unique(fold)}


def cut_per_fold(score: np.ndarray, sr: np.ndarray, fold: np.ndarray, keep: float
                 ) -> np.ndarray:
    """Events above their fold's threshold (:func:`fold_thresholds`)."""
    thr = fold_thresholds(score, sr, fold, keep)
    return score >= np.array([thr[int(f)] for f in fold])


class Hunt:
    """One card's scan over injected signal fractions (see the module docstring)."""

    def __init__(self, card: ModelCard, plots_dir: Path):
        self.card, self.spec = card, card.evaluation.hunt
        self.cfg = DijetConfig.from_dict(dict(card.data.generator))
        self.events = read_dijet_h5(dataset_file(card))
        self.reference = {k: v[self.events["part"] == DATA_BACKGROUND]
                          for k, v in self.events.items()}
        self.work = Path(plots_dir).parent / "hunt"
        self.plots_dir = Path(plots_dir)
        self.seed = card.training.seed

    def supervised(self):
        """The supervised reference classifier (trained once, on the labelled sample)."""
        lab = labelled(self.events)
        x, y = features(lab, self.reference), lab["label"].astype(np.int64)
        ccard = classifier_card(self.card, "supervised")
        tr, va = train_val(np.arange(len(x)), self.seed)
        model = fit_model(ccard, x, y, tr, va, self.work / "supervised")
        return lambda rows: class1_score(ccard, model, rows)

    def cwola(self, x: np.ndarray, sr: np.ndarray, fold: np.ndarray, tag: str) -> np.ndarray:
        """k-fold SR-vs-SB scores: each event by the model of the other folds."""
        score = np.zeros(len(x))
        ccard = classifier_card(self.card, "cwola")
        for f in range(self.spec.folds):
            tr, va = train_val(np.flatnonzero(fold != f), self.seed + f)
            model = fit_model(ccard, x, sr.astype(np.int64), tr, va,
                              self.work / tag / f"fold{f}")
            score[fold == f] = class1_score(ccard, model, x[fold == f])
        return score

    def anode(self, rows: np.ndarray, sr: np.ndarray, fold: np.ndarray, tag: str
              ) -> tuple[np.ndarray, list]:
        """log R = log p_SR(x|m) - log p_SB(x|m) for SR events (k folds of the SR flow), and
        per fold the function scoring background drawn from the SB flow at SR masses."""
        fcard = self.card.with_overrides(f"{self.card.name}_flow",
                                         {"training.epochs": self.spec.epochs})
        zeros = np.zeros(len(rows), np.int64)
        tr, va = train_val(np.flatnonzero(~sr), self.seed)
        sb_flow = fit_model(fcard, rows, zeros, tr, va, self.work / tag / "sb")
        log_r = np.full(len(rows), -np.inf)
        rng = np.random.default_rng(self.seed)
        masses = rng.choice(rows[sr, -1], self.spec.background_samples)
        fake = np.concatenate([flow_sample(sb_flow, masses, self.seed), masses[:, None]], 1)
        fake_log_r = []
        for f in range(self.spec.folds):
            tr, va = train_val(np.flatnonzero(sr & (fold != f)), self.seed + f)
            sr_flow = fit_model(fcard, rows, zeros, tr, va, self.work / tag / f"sr{f}")
            sel = sr & (fold == f)
            log_r[sel] = flow_log_prob(sr_flow, rows[sel]) - flow_log_prob(sb_flow, rows[sel])
            fake_log_r.append(flow_log_prob(sr_flow, fake) - flow_log_prob(sb_flow, fake))
        return log_r, fake_log_r

    def row(self, fraction: float, supervised) -> tuple[dict, dict]:
        """(significances, truth counts after each cut) at one injected fraction."""
        sp, cfg = self.spec, self.cfg
        data = injected(self.events, fraction)
        x, m, sig = features(data, self.reference), data["mjj"], data["label"] == 1
        sr, fold = in_sr(m, cfg), folds_of(len(m), sp.folds, self.seed)
        n_b = int((~sig & sr).sum())
        out = {"signal in SR": int((sig & sr).sum()), "S/B in SR": (sig & sr).sum() / n_b,
               "Z bump hunt": bump_hunt(m, cfg, sp.bins)["z"]}
        truth: dict = {}
        scores = {"supervised": supervised(x)}
        tag = f"f{fraction:g}"
        if self.card.task == "classification":
            scores["CWoLa"] = self.cwola(x, sr, fold, tag)
        for keep in sp.keep:
            for name, score in scores.items():
                sel = cut_per_fold(score, sr, fold, keep)
                out[f"Z {name} (keep {100 * keep:g} %)"] = bump_hunt(m[sel], cfg, sp.bins)["z"]
                truth[f"{name} keep {100 * keep:g} %"] = _truth(sel, sig, sr)
        if self.card.task == "density":
            out |= self._anode_row(x, m, sig, sr, fold, tag, truth)
        method = "CWoLa" if self.card.task == "classification" else None
        if method and np.any(sig & sr):
            out[f"AUC {method} (SR)"] = roc_auc(sig[sr], scores[method][sr])
        return out, truth

    def _anode_row(self, x, m, sig, sr, fold, tag: str, truth: dict) -> dict:
        rows = np.concatenate([x, scaled_mass(m, self.cfg)[:, None]], axis=1)
        log_r, fake = self.anode(rows, sr, fold, tag)
        b_before = bump_hunt(m, self.cfg, self.spec.bins)["b_sr"]
        n_sr = {f: int(((fold == f) & sr).sum()) for f in range(self.spec.folds)}
        out = {}
        for keep in self.spec.keep:
            thr = fold_thresholds(log_r, sr, fold, keep)
            sel = sr & (log_r >= np.array([thr[int(f)] for f in fold]))
            eff_b = sum(np.mean(fake[f] >= thr[f]) * n_sr[f] for f in n_sr) / sum(n_sr.values())
            n, b = float(sel.sum()), b_before * eff_b
            out[f"Z ANODE (keep {100 * keep:g} %)"] = poisson_z(n, b)
            truth[f"ANODE keep {100 * keep:g} %"] = _truth(sel, sig, sr) | {
                "background estimate": b}
        if np.any(sig & sr):
            out["AUC ANODE (SR)"] = roc_auc(sig[sr], log_r[sr])
        return out

    def run(self) -> dict:
        """The scan: a table per injected fraction, the truth counts, and the plots."""
        supervised = self.supervised()
        table, truth = {}, {}
        for fraction in self.spec.fractions:
            table[f"{fraction:g}"], truth[f"{fraction:g}"] = self.row(fraction, supervised)
        plots = self.plot(table, truth)
        return {"method": "CWoLa" if self.card.task == "classification" else "ANODE",
                "sr_gev": list(self.cfg.sr), "folds": self.spec.folds,
                "keep": list(self.spec.keep), "table": table, "truth_after_cut": truth,
                "plots": plots}

    def plot(self, table: dict, truth: dict) -> list[str]:
        """Significance versus injected fraction, one plot per cut, with the method's true
        S / sqrt(B) after the cut (a perfect background estimate)."""
        fractions = np.array([float(f) for f in table])
        paths = []
        for keep in self.spec.keep:
            cols = ["Z bump hunt"] + [c for c in next(iter(table.values()))
                                      if c.endswith(f"(keep {100 * keep:g} %)")]
            series = {c: (fractions, np.array([table[f][c] for f in table], float))
                      for c in cols}
            method = "CWoLa" if self.card.task == "classification" else "ANODE"
            key = f"{method} keep {100 * keep:g} %"
            series[f"{method}: true S / sqrt(B) after the cut"] = (
                fractions, np.array([truth[f][key]["s_over_sqrt_b"] for f in table], float))
            path = self.plots_dir / f"significance_keep{100 * keep:g}.png"
            plot_curves(series, path, "injected signal fraction (S / B, whole mass range)",
                        "significance of the SR excess (Poisson)",
                        title=f"{self.card.name}: cut keeps {100 * keep:g} % of SR events",
                        hline=0.0)
            paths.append(path.name)
        return paths


def _truth(sel: np.ndarray, sig: np.ndarray, sr: np.ndarray) -> dict:
    """True signal and background events in SR after a cut, and S / sqrt(B)."""
    s, b = int((sel & sr & sig).sum()), int((sel & sr & ~sig).sum())
    return {"signal": s, "background": b, "s_over_sqrt_b": s / np.sqrt(b) if b else np.nan}


@register_evaluator("classification", "dijet")
def evaluate_cwola(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """The card's own SR-vs-SB classifier on its test split (AUC for SR vs SB, and for
    signal vs background), then the CWoLa hunt scan."""
    test = splits["test"]
    score = class1_score(card, model, test.images())
    is_sig = test.truth("is_signal") == 1
    auc = roc_auc(test.target == 1, score)
    metrics = {"n_test": int(len(test)), "auc": auc, "auc_sr_vs_sb": auc}
    if 0 < is_sig.sum() < len(is_sig):
        metrics["auc_signal_vs_background"] = roc_auc(is_sig, score)
    if card.evaluation.hunt is not None:
        metrics["hunt"] = Hunt(card, plots_dir).run()
    return {"metrics": metrics, "baseline": {}}


@register_evaluator("density", "dijet")
def evaluate_anode(card, model, splits, plots_dir, progress: bool = False) -> dict:
    """The card's own sideband flow: mean log-density of the test events in SB and (by
    interpolation) in SR; then the ANODE hunt scan."""
    test = splits["test"]
    cfg = test.context["dijet"]
    logp = flow_log_prob(model, test.images())
    sr = in_sr(test.truth("mjj"), cfg)
    metrics = {"n_test": int(len(test)), "mean_log_density_sb": float(logp[~sr].mean()),
               "mean_log_density_sr": float(logp[sr].mean())}
    if card.evaluation.hunt is not None:
        metrics["hunt"] = Hunt(card, plots_dir).run()
    return {"metrics": metrics, "baseline": {}}
