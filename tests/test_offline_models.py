"""Every offline model card of the repository trains for a few steps and evaluates, on a small
sample of its own generator (same architecture, data format, task and studies)."""

import math
from pathlib import Path

import numpy as np
import pytest

from trigkit.core.card import load_card

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = sorted(p.stem for p in (ROOT / "models").glob("*.yaml")
                 if not p.stem.startswith("l0_"))
SMALL = {
    "jets": {"data.events": 1500},
    "monojet": {"data.events": 1500},
    "monojet_hist": {"data.events": 3000, "data.hist.sets": 200,
                     "data.hist.scan_r": [100, 200], "data.hist.r": 200},
    "electrons": {"data.events": 3000},
    "dijet": {"data.events": 4000, "data.generator": {"signal_events": 400,
                                                      "labelled_events": 400},
              "evaluation.hunt.fractions": [0.0, 0.05], "evaluation.hunt.folds": 2,
              "evaluation.hunt.epochs": 1, "evaluation.hunt.keep": [0.2],
              "evaluation.hunt.background_samples": 2000},
}


def test_every_offline_issue_model_has_a_card():
    assert {"jet_darkphoton_cnn", "jet_darkphoton_tnn", "jet_wgan_gp", "jet_autoencoder",
            "monojet_event_dnn", "monojet_hist_dnn", "monojet_hist_cnn", "lowpt_electron_dnn",
            "lowpt_electron_tnn"} <= set(OFFLINE)


@pytest.mark.parametrize("name", OFFLINE)
def test_card_trains_a_few_steps_and_evaluates(name, tmp_path, monkeypatch):
    from trigkit.evaluate import evaluate_model
    from trigkit.learn.data import load_splits
    from trigkit.learn.train import Trainer, load_trained_model

    card = load_card(name, models_dir=ROOT / "models")
    overrides = {**SMALL[card.data.source], "training.epochs": 1, "training.threads": 1,
                 "training.batch_size": 64, "evaluation.variants": {}}
    if card.task == "generative":
        overrides["training.epochs"] = 2
    small = card.with_overrides(card.name, overrides)
    monkeypatch.chdir(tmp_path)
    splits = load_splits(small)
    assert len(splits["train"]) > 0 and len(splits["test"]) > 0
    fit = Trainer(small, progress=False, verbose=False, splits=splits).fit()
    assert len(fit.history) >= 1
    losses = [v for k, v in fit.history[-1].items() if "loss" in k or k in ("critic", "W")]
    assert losses and all(math.isfinite(v) for v in losses), fit.history[-1]
    model = load_trained_model(small)
    out = evaluate_model(small, model, splits, tmp_path / "build" / small.name)
    metrics = out["metrics"]
    if card.task in ("classification", "anomaly"):
        assert 0.0 <= metrics["auc"] <= 1.0
    plots = list((tmp_path / "build" / small.name / "plots").glob("*.png"))
    assert plots, "no plots written"
    if card.data.input_bits:  # firmware models see integer codes in the card's range
        x = splits["test"].images()
        lo, hi = small.input_range
        assert np.issubdtype(x.dtype, np.integer) and lo <= x.min() and x.max() <= hi
