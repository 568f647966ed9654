"""Signal contamination of an anomaly search (``evaluation.contamination``).

A search trained on data never sees a pure background: the signal it looks for is in its
training sample. For each signal class and fraction f, the card's autoencoder is retrained
(same architecture, same seed) on its background training and validation events plus
round(f / (1 - f) * N_background) events of that signal class from the *same* splits (so the
signal is f of the events), and evaluated on the card's held-out test events with every
anomaly score (fitted on its own, contaminated, training and validation events). f = 0 is
trained once and serves every signal. The models go to build/NAME/contamination/RUN/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError
from trigkit.core.paths import PLOTS, model_dir
from trigkit.core.plots import plot_curves
from trigkit.core.report import read_report, update_report
from trigkit.evaluate.offline import anomaly_search
from trigkit.learn.data import Split, load_splits
from trigkit.learn.train import Trainer, load_trained_model

Say = Callable[[str], None]


def contaminated(split: Split, background: int, signal: int, fraction: float) -> Split:
    """The background events of ``split`` plus the first signal events (in file order) that
    make ``fraction`` of the result."""
    bkg = split.target == background
    n_sig = int(round(fraction / (1.0 - fraction) * int(bkg.sum())))
    sig_idx = np.flatnonzero(split.target == signal)
    if n_sig > len(sig_idx):
        raise TrigkitError(f"contamination {fraction:g}: the {split.name} split holds "
                         f"{len(sig_idx)} signal events, {n_sig} are needed; generate more "
                         "events or raise that class in data.generator.mixed_fractions")
    keep = bkg.copy()
    keep[sig_idx[:n_sig]] = True
    return split.subset(keep)


def run_name(signal: str | None, fraction: float) -> str:
    """Folder name of one study run ("background_only" for f = 0)."""
    return "background_only" if fraction == 0 or signal is None else \
        f"{signal}_{100 * fraction:g}pct"


def _train_one(card: ModelCard, splits: dict[str, Split], out: Path, fresh: bool,
               progress: bool) -> dict:
    """Train one study model and evaluate every score on the test split."""
    Trainer(card, out_dir=out, progress=progress, splits=splits, verbose=False).fit(fresh=fresh)
    per_score, _, _ = anomaly_search(card, load_trained_model(card, out_dir=out), splits)
    return per_score


def contamination_study(card: ModelCard, progress: bool = False, fresh: bool = False,
                        say: Say = print) -> dict:
    """Run the card's contamination study; returns (and writes into report.json
    ``contamination``) per signal and score the AUC of that signal and the background's 1/JSD
    at each fraction, and writes plots/contamination_{auc,inv_jsd}.png."""
    spec = card.evaluation.contamination
    t0 = time.perf_counter()
    study = card.with_overrides(f"{card.name}_contamination", {
        "training.epochs": spec.epochs or card.training.epochs, "data.train_on": [],
        "evaluation.contamination": None})
    full = load_splits(study, progress=progress)
    classes = list(card.data.classes)
    b = classes.index(card.evaluation.background or classes[0])
    work = model_dir(card.name) / "contamination"
    results: dict = {}
    cache: dict[str, dict] = {}
    for sig in spec.signals:
        k = classes.index(sig)
        for f in spec.fractions:
            name = run_name(sig, f)
            if name not in cache:
                splits = {"train": contaminated(full["train"], b, k, f),
                          "val": contaminated(full["val"], b, k, f), "test": full["test"]}
                cache[name] = _train_one(study, splits, work / name, fresh, progress)
                say(f"{card.name} contamination {name}: "
                    + ", ".join(f"{s} AUC({sig})={m['per_class'][sig]['auc']:.3f} 1/JSD="
                                f"{m['inv_jsd_at_50pct_bkg_eff']:.3g}"
                                for s, m in cache[name].items()))
            for score, m in cache[name].items():
                row = results.setdefault(sig, {}).setdefault(score, {"auc": [], "inv_jsd": []})
                row["auc"].append(m["per_class"][sig]["auc"])
                row["inv_jsd"].append(m["inv_jsd_at_50pct_bkg_eff"])
    out = {"fractions": list(spec.fractions), "epochs": study.training.epochs,
           "signals": results, "seconds": time.perf_counter() - t0,
           "plots": _plots(card, results, list(spec.fractions))}
    plots = sorted({*read_report(model_dir(card.name)).get("plots", []), *out["plots"]})
    update_report(model_dir(card.name), {"contamination": out, "plots": plots},
                  timings={"contamination": out["seconds"]})
    return out


def _plots(card: ModelCard, results: dict, fractions: list[float]) -> list[str]:
    """AUC and 1/JSD versus the signal fraction, one curve per signal and score."""
    out = model_dir(card.name)
    x = 100 * np.asarray(fractions)
    (out / PLOTS).mkdir(parents=True, exist_ok=True)
    paths = []
    for key, label in (("auc", "AUC (signal vs background, test)"),
                       ("inv_jsd", "1/JSD at 50 % background efficiency")):
        series = {f"{sig}, {score}": (x, np.asarray(r[key], float))
                  for sig, scores in results.items() for score, r in scores.items()}
        path = out / PLOTS / f"contamination_{key}.png"
        plot_curves(series, path, "signal in the training sample [%]", label,
                    title=f"{card.name}: signal contamination",
                    hline=0.5 if key == "auc" else None)
        paths.append(str(path.relative_to(out)))
    return paths
