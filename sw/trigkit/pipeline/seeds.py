"""Several training seeds of one card (``training.seeds``): every seed trained in its own folder
(``build/NAME/seeds/seedK/``), the shipped checkpoint chosen by the validation split
(``training.monitor``, never the test split), and the spread of the test metric reported."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from trigkit.core.card import ModelCard
from trigkit.core.io import atomic_path
from trigkit.core.paths import model_dir
from trigkit.evaluate.common import predict_outputs
from trigkit.learn.data import Split
from trigkit.learn.metrics import accuracy, regression_metrics
from trigkit.learn.train import Trainer, TrainResult, load_trained_model, monitored_score

#: What a seed folder holds that the model folder takes over from the chosen seed.
SEED_FILES = ("best.pt", "last.pt", "history.json", "metrics.csv")


def seed_dir(card: ModelCard, seed: int) -> Path:
    return model_dir(card.name) / "seeds" / f"seed{seed}"


def _test_metric(card: ModelCard, out_dir: Path, test: Split) -> tuple[str, float]:
    model = load_trained_model(card, out_dir=out_dir)
    out = predict_outputs(model, card, test.images())  # regression: (N,) in target units
    if card.task == "classification":
        return "accuracy", accuracy(test.target, out.argmax(axis=1))
    return "sigma_core_cm", regression_metrics(out, test.target)["sigma_core_cm"]


def train_seeds(card: ModelCard, splits: dict[str, Split], *, fresh: bool, epochs: int | None,
                progress: bool) -> tuple[TrainResult, dict]:
    """Train ``training.seeds`` seeds (resuming each), copy the one with the best validation
    value into the model folder; returns its result and the ``seeds`` report section."""
    n, first = card.training.seeds, card.training.seed
    results, values, tests = {}, {}, {}
    for seed in range(first, first + n):
        seed_card = card.with_overrides(card.name, {"training.seed": seed}, keep_variants=True)
        out = seed_dir(card, seed)
        results[seed] = Trainer(seed_card, out_dir=out, progress=progress,
                                splits=splits, verbose=False).fit(fresh=fresh, epochs=epochs)
        best_row = results[seed].history[results[seed].best_epoch - 1]
        values[seed] = monitored_score(card.training.monitor, best_row)
        name, tests[seed] = _test_metric(seed_card, out, splits["test"])
    chosen = min(values, key=values.get)
    dest = model_dir(card.name)
    for file in SEED_FILES:
        src = seed_dir(card, chosen) / file
        if src.is_file():
            with atomic_path(dest / file) as tmp:
                shutil.copyfile(src, tmp)
    sign = -1.0 if card.training.monitor == "val_accuracy" else 1.0
    test_values = np.array([tests[s] for s in sorted(tests)])
    section = {
        "seeds": sorted(values), "chosen": chosen,
        "chosen_by": f"validation {card.training.monitor}",
        "validation": [sign * values[s] for s in sorted(values)],
        "test_metric": name, "test": test_values.tolist(),
        "test_mean": float(test_values.mean()), "test_std": float(test_values.std(ddof=1)),
    }
    return results[chosen], section
