"""The training core on tiny models: errors before training, loss, resume, distillation."""

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from trigkit.core.card import ModelCard, load_card
from trigkit.core.config import from_dict
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.learn.data import load_splits, split_indices
from trigkit.learn.train import Trainer, load_checkpoint

TINY_ARCH = {"eta_pool": 8, "channels": [4], "pool": [1, 2], "dense": [8]}


def tiny_card(name="tiny", quant="float", task="classification", **sections) -> dict:
    card = {
        "name": name, "task": task,
        "data": {"events": 1200, "seed": 3, "split": [0.6, 0.2, 0.2]},
        "architecture": dict(TINY_ARCH),
        "quant": {"weights": quant},
        "training": {"epochs": 3, "batch_size": 64, "lr": 3e-3, "threads": 1},
        "evaluation": {"noise_events": 500},
    }
    if task == "regression":
        card["data"].update({"sample": "darkphoton", "target": "vtx_r", "target_scale": 100.0,
                             "sim": {"detector": {"noise_rate": 0.0}}})
    for k, v in sections.items():
        card[k] = {**card.get(k, {}), **v}
    return card


def write_card(workdir: Path, data: dict) -> ModelCard:
    (workdir / "models" / f"{data['name']}.yaml").write_text(yaml.safe_dump(data))
    return load_card(data["name"])


def losses(result) -> list[float]:
    return [h["train_loss"] for h in result.history]


def test_card_errors_name_the_problem(workdir):
    with pytest.raises(ConfigError, match="unknown key training.epoch; allowed keys"):
        from_dict(ModelCard, tiny_card(training={"epoch": 3}))
    with pytest.raises(ConfigError, match="power of two"):
        bad = tiny_card(quant="ternary")
        bad["quant"]["weight_scale"] = 0.1
        from_dict(ModelCard, bad)
    with pytest.raises(ConfigError, match="batchnorm is only for float"):
        from_dict(ModelCard, tiny_card(quant="ternary", architecture={"batchnorm": True}))
    with pytest.raises(ConfigError, match="regression needs a truth dataset"):
        from_dict(ModelCard, {**tiny_card(), "task": "regression"})
    with pytest.raises(TrigkitError, match="model card models/nope.yaml not found"):
        load_card("nope")
    data = tiny_card()
    (workdir / "models" / "other.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="must match the file name"):
        load_card("other")


def test_repository_cards_load():
    root = Path(__file__).resolve().parents[1] / "models"
    names = sorted(p.stem for p in root.glob("*.yaml"))
    assert {"l0_pointing_f32", "l0_pointing_tnn", "l0_vertex_f32", "l0_vertex_tnn"} <= set(names)
    for name in names:
        card = load_card(name, models_dir=root)
        assert card.name == name


def test_split_is_disjoint_complete_and_seeded():
    a = split_indices(5000, (0.7, 0.15, 0.15), 1)
    b = split_indices(5000, (0.7, 0.15, 0.15), 1)
    c = split_indices(5000, (0.7, 0.15, 0.15), 2)
    allidx = np.concatenate(list(a.values()))
    assert np.array_equal(np.sort(allidx), np.arange(5000))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_streaming_and_in_memory_batches_agree(workdir):
    card = write_card(workdir, tiny_card())
    mem = load_splits(card, streaming=False)["train"]
    stream = load_splits(card, streaming=True)["train"]
    assert stream.hits is None and mem.hits is not None
    xs = np.concatenate([x for x, _ in stream.batches(100)])
    np.testing.assert_array_equal(xs, mem.hits)
    # shuffled epochs cover every event once
    ys = np.concatenate([y for _, y in stream.batches(64, shuffle_seed=5)])
    assert sorted(ys.tolist()) == sorted(mem.target.tolist())


def test_input_shape_mismatch_and_missing_labels_fail_before_training(workdir):
    card = write_card(workdir, tiny_card(data={"input_shape": [9, 192]}))
    with pytest.raises(TrigkitError, match=r"expects input_shape \[9, 192\].*\[9, 384\]"):
        Trainer(card, progress=False).fit()
    assert not (workdir / "build" / "tiny" / "last.pt").exists()
    path = workdir / "nolabel.h5"
    with h5py.File(path, "w") as f:
        f["hits"] = np.zeros((300, 9, 384), np.uint8)
    card = write_card(workdir, tiny_card(data={"source": str(path)}))
    with pytest.raises(TrigkitError, match="no 'label' dataset"):
        load_splits(card)
    card = write_card(workdir, tiny_card(task="regression", data={"source": str(path)}))
    with pytest.raises(TrigkitError, match="no 'vtx_r' dataset for regression"):
        load_splits(card)


@pytest.mark.parametrize("quant", ["float", "ternary"])
def test_loss_decreases_and_resume_continues_identically(workdir, quant):
    card = write_card(workdir, tiny_card(quant=quant, training={"epochs": 4}))
    full = Trainer(card, progress=False, verbose=False).fit(fresh=True)
    assert losses(full)[-1] < losses(full)[0]
    # an interrupted run (2 epochs), then resumed to 4
    Trainer(card, progress=False, verbose=False).fit(fresh=True, epochs=2)
    resumed = Trainer(card, progress=False, verbose=False).fit(epochs=4)
    assert losses(resumed) == losses(full)
    best = load_checkpoint(card, workdir / "build" / "tiny" / "best.pt")
    assert best["state"]["best_epoch"] >= 1


def test_checkpoint_from_another_architecture_is_refused(workdir):
    card = write_card(workdir, tiny_card(training={"epochs": 1}))
    Trainer(card, progress=False, verbose=False).fit()
    other = write_card(workdir, tiny_card(architecture={"channels": [6]}, training={"epochs": 2}))
    with pytest.raises(TrigkitError, match="different architecture.*--fresh"):
        Trainer(other, progress=False, verbose=False).fit()


def test_nan_loss_stops_with_a_clear_error(workdir, monkeypatch):
    card = write_card(workdir, tiny_card(training={"epochs": 1}))
    trainer = Trainer(card, progress=False, verbose=False)
    monkeypatch.setattr(trainer, "_loss", lambda out, y, x: out.sum() * torch.tensor(float("nan")))
    with pytest.raises(TrigkitError, match="loss became nan at epoch 1 step 0; lower training.lr"):
        trainer.fit()
    assert not (workdir / "build" / "tiny" / "last.pt").exists()


def test_distillation_from_a_teacher(workdir):
    write_card(workdir, tiny_card(name="teacher", training={"epochs": 2}))
    student = write_card(workdir, tiny_card(
        name="student", quant="ternary",
        training={"epochs": 2, "distill": {"teacher": "teacher", "temperature": 3.0,
                                           "weight": 0.7}}))
    with pytest.raises(TrigkitError, match="teacher teacher has no checkpoint"):
        Trainer(student, progress=False, verbose=False).fit()
    Trainer(load_card("teacher"), progress=False, verbose=False).fit()
    res = Trainer(student, progress=False, verbose=False).fit()
    assert np.isfinite(losses(res)).all() and len(res.history) == 2


def test_regression_trains_on_vertex_radius(workdir):
    card = write_card(workdir, tiny_card(task="regression", training={"epochs": 3}))
    res = Trainer(card, progress=False, verbose=False).fit()
    assert losses(res)[-1] < losses(res)[0]
    assert "val_rmse" in res.history[-1]
