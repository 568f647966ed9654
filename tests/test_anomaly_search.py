"""The anomaly search beyond the plain reconstruction error: the complexity-aware and latent
scores (fitted on background only), the contamination study's configuration and a few steps
of its training path, on tiny synthetic jet images."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from scipy.stats import multivariate_normal

from trigkit.core.card import ModelCard, load_card
from trigkit.core.config import from_dict
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.learn.anomaly import (
    ComplexityNormaliser,
    LatentGaussian,
    fit_scorer,
    image_entropy,
)
from trigkit.learn.data import load_splits


def write_jets(path: Path, n: int = 3072, seed: int = 0) -> Path:
    """Two-class 2 x 8 x 8 images in trigkit's jet layout: 'top' blobs are wider and heavier."""
    rng = np.random.default_rng(seed)
    label = np.where(rng.uniform(size=n) < 0.7, 0, 2)  # qcd = 0, top = 2
    yy, xx = np.mgrid[:8, :8] - 3.5
    width = np.where(label == 2, 2.5, 1.0)[:, None, None] * rng.uniform(0.8, 1.2, (n, 1, 1))
    blob = np.exp(-(yy**2 + xx**2)[None] / (2 * width**2))
    images = np.stack([blob * rng.uniform(0.5, 1.5, (n, 1, 1)), 0.5 * blob], axis=1)
    images = (images / images.sum(axis=(1, 2, 3), keepdims=True)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["label"] = label
        f["jet_mass"] = (width[:, 0, 0] * 50 + rng.normal(0, 5, n)).astype(np.float32)
        f.attrs["label_names"] = json.dumps(["qcd", "darkphoton", "top"])
        f.attrs["pixel_size"] = 0.1
    return path


def ae_card(workdir, **evaluation) -> ModelCard:
    card = {"name": "tiny_ae", "task": "anomaly",
            "data": {"source": str(write_jets(workdir / "jets.h5")), "format": "jet_images",
                     "input_shape": [2, 8, 8], "classes": ["qcd", "top"], "train_on": ["qcd"],
                     "split": [0.5, 0.25, 0.25]},
            "architecture": {"kind": "autoencoder", "channels": [4], "latent_dim": 3},
            "training": {"epochs": 2, "batch_size": 64, "lr": 0.01, "threads": 1,
                         "decorrelate": "jet_mass"},
            "evaluation": {"background": "qcd", **evaluation}}
    (workdir / "models" / "tiny_ae.yaml").write_text(yaml.safe_dump(card))
    return load_card("tiny_ae")


def test_image_entropy():
    one = np.zeros((1, 2, 4, 4))
    one[0, 1, 2, 2] = 3.0
    flat = np.ones((1, 2, 4, 4))
    assert image_entropy(np.concatenate([one, flat, np.zeros_like(one)])) == pytest.approx(
        [0.0, np.log(32), 0.0])
    with pytest.raises(TrigkitError, match="non-negative"):
        image_entropy(-flat)


def test_complexity_normaliser_removes_the_complexity_bias(rng):
    c = rng.uniform(0.5, 3.0, 4000)  # background: log error grows with complexity
    err = np.exp(-9.0 + 0.8 * c + rng.normal(0, 0.2, c.size))
    norm = ComplexityNormaliser.fit(err, c)
    assert norm.slope == pytest.approx(0.8, abs=0.03) and norm.scale == pytest.approx(0.2,
                                                                                       rel=0.1)
    # the same error is less anomalous for a more complex jet, and more error is more anomalous
    s = norm.score(np.full(3, 1e-3), np.array([0.5, 1.5, 2.5]))
    assert s[0] > s[1] > s[2]
    assert norm.score(np.array([2e-3]), np.array([1.0]))[0] > norm.score(
        np.array([1e-3]), np.array([1.0]))[0]
    # background jets come out as a standard score: no correlation with complexity left
    z = norm.score(err, c)
    assert abs(np.mean(z)) < 0.05 and abs(np.corrcoef(z, c)[0, 1]) < 0.05
    # a simple jet reconstructed as badly as an average background jet stands out
    simple = norm.score(np.array([np.exp(-9.0 + 0.8 * 1.75)]), np.array([0.3]))[0]
    assert simple > 3.0
    with pytest.raises(TrigkitError, match="different complexity"):
        ComplexityNormaliser.fit(err[:10], np.ones(10))


def test_latent_gaussian_is_the_negative_log_density(rng):
    z = rng.multivariate_normal([1.0, -2.0], [[1.0, 0.6], [0.6, 2.0]], 20000)
    g = LatentGaussian.fit(z)
    pts = np.array([[1.0, -2.0], [3.0, 0.0], [-2.0, -5.0]])
    ref = -multivariate_normal(z.mean(0), np.cov(z, rowvar=False)).logpdf(pts)
    assert g.score(pts) == pytest.approx(ref, rel=1e-4)
    assert g.score(pts)[0] < g.score(pts)[1]
    with pytest.raises(TrigkitError, match="more events than latent"):
        LatentGaussian.fit(z[:2])


def test_scores_are_fitted_on_background_training_events_only(workdir):
    from trigkit.evaluate import evaluate_model
    from trigkit.learn.train import Trainer, load_trained_model

    card = ae_card(workdir)
    splits = load_splits(card)
    assert all(np.all(splits[s].target == 0) for s in ("train", "val"))
    Trainer(card, progress=False, verbose=False).fit()
    model = load_trained_model(card)
    scorer = fit_scorer(model, card, splits["train"].images(), splits["val"].images())
    assert scorer.summary()["complexity_fit_events"] == len(splits["val"])
    assert scorer.latent.n_fit == len(splits["train"])
    out = evaluate_model(card, model, splits, workdir / "build" / "tiny_ae")
    m = out["metrics"]
    assert set(m["scores"]) == {"error", "error_vs_complexity", "latent_density"}
    for sm in m["scores"].values():
        assert 0.0 <= sm["per_class"]["top"]["auc"] <= 1.0
        assert sm["inv_jsd_at_50pct_bkg_eff"] > 0 and 0 <= sm["dcor2_score_mass_bkg"] <= 1
    assert m["auc"] == m["scores"]["error"]["auc"]  # the headline is the plain error
    assert m["score_fit"] == scorer.summary()  # deterministic: the same fit again
    # changing the test jets changes nothing that was fitted
    splits["test"].hits[:] = 0.5 * splits["test"].hits
    again = evaluate_model(card, model, splits, workdir / "build" / "tiny_ae")
    assert again["metrics"]["score_fit"] == m["score_fit"]
    plots = workdir / "build" / "tiny_ae" / "plots"
    assert (plots / "roc_error_vs_complexity.png").is_file()
    assert (plots / "sculpting_latent_density.png").is_file()


@pytest.mark.parametrize("spec, match", [
    ({"signals": ["top"], "fractions": [0.0, 0.6]}, "evaluation.contamination.fractions"),
    ({"signals": ["top"], "fractions": [-0.01]}, "evaluation.contamination.fractions"),
    ({"signals": ["top"], "fractions": [0.1, 0.1]}, "evaluation.contamination.fractions"),
    ({"signals": [], "fractions": [0.1]}, "evaluation.contamination.signals"),
    ({"signals": ["qcd"], "fractions": [0.1]}, "evaluation.contamination.signals"),
    ({"signals": ["higgs"], "fractions": [0.1]}, "evaluation.contamination.signals"),
    ({"signals": ["top"], "epochs": -1}, "evaluation.contamination.epochs"),
])
def test_contamination_config_errors_name_the_key(spec, match):
    card = {"name": "t", "task": "anomaly", "data": {"source": "jets",
                                                     "classes": ["qcd", "top"]},
            "architecture": {"kind": "autoencoder"},
            "evaluation": {"background": "qcd", "contamination": spec}}
    with pytest.raises(ConfigError, match=match):
        from_dict(ModelCard, card)


def test_contamination_needs_an_anomaly_search():
    with pytest.raises(ConfigError, match="task: anomaly"):
        from_dict(ModelCard, {"name": "t", "task": "classification",
                              "data": {"source": "jets", "classes": ["qcd", "top"]},
                              "architecture": {"kind": "cnn"},
                              "evaluation": {"contamination": {"signals": ["top"]}}})


def test_contaminated_split_has_the_signal_fraction(workdir):
    from trigkit.pipeline.contamination import contaminated

    card = ae_card(workdir)
    full = load_splits(card.with_overrides("tiny_all", {"data.train_on": []}))
    train = full["train"]
    n_bkg = int((train.target == 0).sum())
    for f in (0.0, 0.05, 0.2):
        part = contaminated(train, 0, 1, f)
        assert int((part.target == 0).sum()) == n_bkg
        assert np.mean(part.target == 1) == pytest.approx(f, abs=1.0 / n_bkg)
    with pytest.raises(TrigkitError, match="signal events"):
        contaminated(train, 0, 1, 0.49)


def test_contamination_study_trains_and_reports(workdir):
    from trigkit.core.report import read_report
    from trigkit.pipeline.contamination import contamination_study
    from trigkit.pipeline.report import render_markdown

    card = ae_card(workdir, contamination={"signals": ["top"], "fractions": [0.0, 0.1],
                                           "epochs": 1})
    said = []
    out = contamination_study(card, say=said.append)
    assert out["fractions"] == [0.0, 0.1] and out["epochs"] == 1
    row = out["signals"]["top"]
    assert set(row) == {"error", "error_vs_complexity", "latent_density"}
    for r in row.values():
        assert len(r["auc"]) == 2 and all(0.0 <= a <= 1.0 for a in r["auc"])
        assert all(j > 0 for j in r["inv_jsd"])
    build = workdir / "build" / "tiny_ae"
    assert (build / "contamination" / "background_only" / "best.pt").is_file()
    assert (build / "contamination" / "top_10pct" / "best.pt").is_file()
    assert (build / "plots" / "contamination_auc.png").is_file()
    assert len(said) == 2
    report = read_report(build)
    assert report["contamination"]["signals"] == json.loads(json.dumps(out["signals"]))
    assert "## Signal contamination" in render_markdown(report)


@pytest.mark.parametrize("spec, match", [
    ({"lambdas": []}, "evaluation.decorrelation.lambdas"),
    ({"lambdas": [0.0, 0.001]}, "evaluation.decorrelation.lambdas"),
    ({"lambdas": [0.001, 0.001]}, "evaluation.decorrelation.lambdas"),
    ({"lambdas": [0.001], "target_inv_jsd": 0}, "evaluation.decorrelation.target_inv_jsd"),
])
def test_decorrelation_config_errors_name_the_key(spec, match):
    card = {"name": "t", "task": "anomaly", "data": {"source": "jets",
                                                     "classes": ["qcd", "top"]},
            "architecture": {"kind": "autoencoder"},
            "evaluation": {"background": "qcd", "decorrelation": spec}}
    with pytest.raises(ConfigError, match=match):
        from_dict(ModelCard, card)


def test_chosen_lambda_is_the_smallest_passing_on_validation():
    from trigkit.pipeline.decorrelation import chosen_lambda

    assert chosen_lambda({0.001: 25.0, 0.0005: 21.0, 0.0002: 8.0}, 20.0) == 0.0005
    assert chosen_lambda({0.001: 19.0, 0.002: 30.0}, 20.0) == 0.002
    assert chosen_lambda({0.001: 5.0}, 20.0) is None


def test_decorrelation_study_trains_every_lambda_and_reports(workdir):
    from trigkit.core.report import read_report
    from trigkit.pipeline.decorrelation import decorrelation_study
    from trigkit.pipeline.report import render_markdown

    card = ae_card(workdir, decorrelation={"lambdas": [0.5, 0.05], "target_inv_jsd": 1e-6,
                                           "epochs": 1})
    said = []
    out = decorrelation_study(card, say=said.append)
    assert out["lambdas"] == [0.05, 0.5] and out["epochs"] == 1
    assert out["chosen_lambda"] == 0.05  # every lambda passes a tiny target: the smallest
    for key, run in out["runs"].items():
        assert run["val_inv_jsd"] > 0
        assert set(run["scores"]) == {"error", "error_vs_complexity", "latent_density"}
        assert (workdir / "build" / "tiny_ae" / "decorrelation" / f"disco_{key}"
                / "best.pt").is_file()
    build = workdir / "build" / "tiny_ae"
    assert (build / "plots" / "decorrelation_tradeoff.png").is_file()
    assert len(said) == 3
    report = read_report(build)
    assert report["decorrelation"]["chosen_lambda"] == 0.05
    assert "lambda = 0.05" in render_markdown(report)
