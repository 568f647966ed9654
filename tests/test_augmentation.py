"""The generated-sample augmentation study and the generator's validation on tiny toy jets:
a pixel-set WGAN-GP card trained for one epoch feeds a CNN card's study rows."""

import numpy as np
import pytest
import yaml

from trigkit.core.card import load_card
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.core.report import read_report
from trigkit.learn.data import load_splits
from trigkit.learn.train import Trainer, load_trained_model
from trigkit.pipeline.augmentation import as_preprocessed, augmentation_study
from trigkit.pipeline.report import render_markdown

DATA = {"source": "jets", "sample": "mixed", "events": 1500, "seed": 5,
        "input_shape": [2, 9, 9], "classes": ["qcd", "darkphoton"]}


def write_cards(workdir, **augmentation) -> None:
    gan = {"name": "tiny_gan", "task": "generative",
           "data": {**DATA, "train_on": ["darkphoton"],
                    "generator": {"image_size": 9, "preprocess": ["centre"]}},
           "architecture": {"kind": "pixel_wgan", "latent_dim": 4, "dense": [8]},
           "training": {"epochs": 1, "batch_size": 16, "critic_steps": 2, "threads": 1}}
    cnn = {"name": "tiny_cnn", "task": "classification",
           "data": {**DATA, "generator": {"image_size": 9,
                                          "preprocess": ["centre", "normalise"]}},
           "architecture": {"kind": "cnn", "channels": [2], "kernel": [3, 3], "pool": [1, 1],
                            "dense": [4], "padding": "same", "eta_pool": 1},
           "training": {"epochs": 1, "batch_size": 64, "threads": 1},
           "evaluation": {"background": "qcd", "augmentation": augmentation}}
    for card in (gan, cnn):
        (workdir / "models" / f"{card['name']}.yaml").write_text(yaml.safe_dump(card))


def test_augmentation_study_rows_and_report(workdir):
    write_cards(workdir, generated_from="tiny_gan", factors=[1], seeds=2)
    gan = load_card("tiny_gan")
    Trainer(gan, progress=False, verbose=False).fit()
    card = load_card("tiny_cnn")
    said = []
    out = augmentation_study(card, say=said.append)
    rows = out["rows"]
    assert list(rows) == ["real_N", "real_N_plus_1N_generated", "real_2N"]
    n_sig = int((load_splits(card)["train"].target == 1).sum())
    base = rows["real_N"]["train_events"]
    assert rows["real_N_plus_1N_generated"]["generated_events"] == n_sig
    assert rows["real_N_plus_1N_generated"]["train_events"] == base + n_sig
    assert rows["real_2N"]["train_events"] == base + n_sig
    for r in rows.values():
        assert len(r["auc"]) == 2 and all(0 <= a <= 1 for a in r["auc"])
        assert r["auc_mean"] == pytest.approx(np.mean(r["auc"]))
    build = workdir / "build" / "tiny_cnn"
    assert (build / "augmentation" / "real_2N" / "seed_1" / "best.pt").is_file()
    assert (build / "plots" / "augmentation_auc.png").is_file()
    assert len(said) == 3
    assert "## Generated-sample augmentation" in render_markdown(read_report(build))


def test_generated_images_take_the_consumer_normalisation(workdir):
    write_cards(workdir, generated_from="tiny_gan")
    gan, cnn = load_card("tiny_gan"), load_card("tiny_cnn")
    Trainer(gan, progress=False, verbose=False).fit()
    fake = load_trained_model(gan).sample_images(5, seed=0)
    normed = as_preprocessed(cnn, gan, fake)
    np.testing.assert_allclose(normed.sum(axis=(1, 2, 3)), 1.0, rtol=1e-5)
    other = cnn.with_overrides("x", {"data.generator": {"image_size": 9, "preprocess": []}})
    with pytest.raises(TrigkitError, match="only in the normalise step"):
        as_preprocessed(other, gan, fake)


def test_augmentation_config_errors(workdir):
    write_cards(workdir, generated_from="", factors=[1])
    with pytest.raises(ConfigError, match="generated_from"):
        load_card("tiny_cnn")
    write_cards(workdir, generated_from="tiny_gan", factors=[0])
    with pytest.raises(ConfigError, match="evaluation.augmentation.factors"):
        load_card("tiny_cnn")
