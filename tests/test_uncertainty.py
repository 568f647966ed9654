"""Bayesian networks (Pyro variational inference) on the shared trainer: card rules, a few
training steps of a classifier and a Gaussian-mixture regressor, reproducibility, weight
sampling, and the calibration metrics on distributions whose answer is known."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from trigkit.core.card import ModelCard, load_card
from trigkit.core.config import from_dict
from trigkit.core.errors import ConfigError
from trigkit.evaluate import evaluate_model
from trigkit.evaluate.uncertainty import plot_spread_vs_size, regression_calibration
from trigkit.learn.bayes import BayesianNet, sample_outputs
from trigkit.learn.data import load_splits
from trigkit.learn.models import build_model, to_input
from trigkit.learn.train import Trainer, load_trained_model

ROOT = Path(__file__).resolve().parents[1]

TINY_CLASSIFIER = {"data.events": 3000, "training.epochs": 2, "training.batch_size": 128,
                   "evaluation.variants": {}, "architecture.dense": [16],
                   "architecture.samples": 8}
TINY_REGRESSOR = {"data.events": 1200, "training.epochs": 1, "training.batch_size": 128,
                  "architecture.dense": [8], "architecture.mixture": 2,
                  "architecture.samples": 6}


def _card(name: str, overrides: dict) -> ModelCard:
    card = load_card(name, models_dir=ROOT / "models")
    return card.with_overrides(card.name, overrides)


def test_bayesian_cards_exist_and_are_bayesian():
    for name in ("lowpt_electron_bnn", "jet_pt_bayes"):
        assert load_card(name, models_dir=ROOT / "models").architecture.bayesian


def test_bayesian_card_rules():
    base = load_card("lowpt_electron_bnn", models_dir=ROOT / "models").to_dict()
    with pytest.raises(ConfigError, match="float"):
        data = json.loads(json.dumps(base))
        data["quant"] = {"weights": "ternary"}
        data["data"]["input_bits"] = 4
        from_dict(ModelCard, data)
    with pytest.raises(ConfigError, match="mlp or cnn"):
        data = json.loads(json.dumps(base))
        data["architecture"]["kind"] = "autoencoder"
        from_dict(ModelCard, data)
    reg = _card("jet_pt_bayes", {"architecture.mixture": 3})
    assert reg.n_outputs == 9  # weight logits, means and widths of 3 Gaussians


def test_bayesian_classifier_trains_samples_and_reports_spread(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    card = _card("lowpt_electron_bnn", TINY_CLASSIFIER)
    splits = load_splits(card)
    fit = Trainer(card, progress=False, verbose=False, splits=splits).fit()
    assert all(math.isfinite(row["val_loss"]) for row in fit.history)
    model = load_trained_model(card)
    assert isinstance(model, BayesianNet)
    x = splits["test"].images()[:200]
    with torch.no_grad():  # the posterior-mean prediction is deterministic
        assert torch.equal(model(to_input(x, card)), model(to_input(x, card)))
    a = sample_outputs(model, x, 4, seed=1, to_tensor=lambda c: to_input(c, card))
    b = sample_outputs(model, x, 4, seed=1, to_tensor=lambda c: to_input(c, card))
    c = sample_outputs(model, x, 4, seed=2, to_tensor=lambda c: to_input(c, card))
    assert a.shape == (4, 200, 2) and np.array_equal(a, b) and not np.array_equal(a, c)
    out = evaluate_model(card, model, splits, tmp_path / "build" / card.name)
    unc = out["metrics"]["uncertainty"]
    assert unc["samples"] == 8 and unc["mean_spread"] > 0
    assert unc["train_events"] == len(splits["train"])
    assert (tmp_path / "build" / card.name / "plots" / "score_spread.png").is_file()


def test_same_seed_and_card_give_the_same_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    card = _card("lowpt_electron_bnn", {**TINY_CLASSIFIER, "training.epochs": 1})
    splits = load_splits(card)
    states = []
    for k in range(2):
        Trainer(card, out_dir=tmp_path / str(k), progress=False, verbose=False,
                splits=splits).fit()
        states.append(load_trained_model(card, out_dir=tmp_path / str(k)).state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_train_events_keeps_a_subset_of_the_training_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    card = _card("lowpt_electron_bnn", {**TINY_CLASSIFIER, "data.train_events": 300})
    full = load_splits(_card("lowpt_electron_bnn", TINY_CLASSIFIER))
    small = load_splits(card)
    assert len(small["train"]) == 300
    assert np.array_equal(small["train"].index, full["train"].index[:300])
    assert np.array_equal(small["test"].index, full["test"].index)


def test_bayesian_mixture_regressor_trains_and_is_calibration_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    card = _card("jet_pt_bayes", TINY_REGRESSOR)
    splits = load_splits(card)
    fit = Trainer(card, progress=False, verbose=False, splits=splits).fit()
    assert math.isfinite(fit.history[-1]["val_loss"])
    model = load_trained_model(card)
    with torch.no_grad():
        out = model(to_input(splits["test"].images()[:5], card))
    assert out.shape == (5, 1)  # the predictive mean
    res = evaluate_model(card, model, splits, tmp_path / "build" / card.name)
    unc = res["metrics"]["uncertainty"]
    for key in ("pull_width", "coverage_68", "coverage_95", "mean_sigma"):
        assert math.isfinite(unc[key])
    assert 0 <= unc["coverage_68"] <= unc["coverage_95"] <= 1
    assert math.isfinite(res["metrics"]["rms"]) and res["baseline"]["observable"]


def _outputs_for(mu: np.ndarray, sigma: np.ndarray, samples: int = 3) -> np.ndarray:
    """Network outputs (samples, N, 3) of one Gaussian with these means and widths."""
    raw = np.log(np.expm1(sigma - 1e-3))  # inverse of softplus + floor
    one = np.stack([np.zeros_like(mu), mu, raw], axis=1)
    return np.repeat(one[None], samples, axis=0)


@pytest.mark.parametrize(("width_factor", "calibrated"), [(1.0, True), (2.0, False),
                                                          (0.5, False)])
def test_calibration_metrics_on_known_gaussians(width_factor, calibrated, tmp_path):
    card = _card("jet_pt_bayes", {"architecture.mixture": 1, "data.target_scale": 1.0})
    rng = np.random.default_rng(3)
    mu = rng.uniform(1, 5, 20000)
    sigma = rng.uniform(0.2, 1.0, 20000)
    y = mu + sigma * rng.standard_normal(20000)
    m = regression_calibration(card, _outputs_for(mu, sigma * width_factor), y, tmp_path)
    ok = 0.9 <= m["pull_width"] <= 1.1 and 0.63 <= m["coverage_68"] <= 0.73
    assert ok == calibrated, m
    if calibrated:
        assert abs(m["coverage_95"] - 0.95) < 0.01
    assert (tmp_path / "pulls.png").is_file() and (tmp_path / "calibration.png").is_file()


def test_spread_vs_size_plot(tmp_path):
    path = plot_spread_vs_size({"a": 1000, "b": 4000}, {"a": 0.1, "b": 0.05},
                               tmp_path / "s.png", "x")
    assert path.is_file()


def test_bayesian_net_builds_from_a_card_deterministically():
    card = _card("lowpt_electron_bnn", TINY_CLASSIFIER)
    torch.manual_seed(0)
    a = build_model(card).state_dict()
    torch.manual_seed(0)
    b = build_model(card).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
