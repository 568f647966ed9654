"""Trust: no code runs from a checkpoint, no card value reaches a Tcl script unchecked, training
results do not depend on machine speed, and damaged input files are refused in one line."""

import contextlib
import io
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from test_train import tiny_card, write_card
from trigkit.cli import main
from trigkit.core.card import ModelCard
from trigkit.core.config import from_dict
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.firmware.synth import vivado_tcl
from trigkit.l0.detector import SimConfig
from trigkit.l0.simulate import write_h5
from trigkit.learn.checkpoint import read_checkpoint
from trigkit.learn.train import Trainer, load_trained_model
from trigkit.pipeline.training import train_stage


def run_cli(*args: str) -> tuple[int, str, str]:
    """The console entry point in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["trigkit", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


class Marker:
    """Unpickling this calls Path.touch(marker): a stand-in for any code a file could run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


# --- 1. checkpoints ------------------------------------------------------------------------


def test_crafted_checkpoint_runs_no_code(workdir):
    card = write_card(workdir, tiny_card(training={"epochs": 1}))
    Trainer(card, progress=False, verbose=False).fit()
    marker = workdir / "pwned"
    for name in ("last.pt", "best.pt"):
        good = read_checkpoint(workdir / "build" / "tiny" / name)
        torch.save({**good, "payload": Marker(marker)}, workdir / "build" / "tiny" / name)
    with pytest.raises(TrigkitError, match="objects other than tensors.*refused"):
        Trainer(card, progress=False, verbose=False).fit(epochs=2)  # resumes from last.pt
    with pytest.raises(TrigkitError, match="refused"):
        load_trained_model(card)  # best.pt, as evaluate, export and teachers load it
    assert not marker.exists()
    code, _, err = run_cli("train", "--model", "tiny", "--epochs", "2", "--no-progress")
    assert code == 2 and "refused" in err and "Traceback" not in err
    assert not marker.exists()


def test_resume_restores_weights_and_optimiser_state_exactly(workdir):
    card = write_card(workdir, tiny_card(quant="ternary", training={"epochs": 3}))
    Trainer(card, progress=False, verbose=False).fit(fresh=True)
    full = read_checkpoint(workdir / "build" / "tiny" / "last.pt")
    Trainer(card, progress=False, verbose=False).fit(fresh=True, epochs=1)
    Trainer(card, progress=False, verbose=False).fit(epochs=3)
    resumed = read_checkpoint(workdir / "build" / "tiny" / "last.pt")
    for key in full["model"]:
        assert torch.equal(full["model"][key], resumed["model"][key]), key
    a, b = full["optimizer"]["state"], resumed["optimizer"]["state"]
    assert a.keys() == b.keys()
    for idx in a:  # Adam step counters and moments of every parameter, scales included
        for name in a[idx]:
            assert torch.equal(a[idx][name], b[idx][name]), (idx, name)


# --- 2. Tcl ----------------------------------------------------------------------------------


def test_tcl_injection_through_the_part_is_refused():
    card = tiny_card(quant="ternary")
    card["hardware"] = {"part": "xcvu13p-flga2577-2-e[exec touch /tmp/pwned]"}
    with pytest.raises(ConfigError, match="hardware.part .* is not an FPGA part name"):
        from_dict(ModelCard, card)
    with pytest.raises(TrigkitError, match="not a part name"):
        vivado_tcl([], "trigkit_top", "xc7a35t;exec rm", 3.125, {})
    with pytest.raises(TrigkitError, match="not a Verilog identifier"):
        vivado_tcl([], "top [exec ls]", "xcvu13p-flga2577-2-e", 3.125, {})
    with pytest.raises(TrigkitError, match="NAME=integer"):
        vivado_tcl([], "trigkit_top", "xcvu13p-flga2577-2-e", 3.125, {"IN_BITS": "1 [exec ls]"})
    with pytest.raises(TrigkitError, match="Tcl safely"):
        vivado_tcl([Path("/tmp/a}b.v")], "trigkit_top", "xcvu13p-flga2577-2-e", 3.125, {})
    tcl = vivado_tcl([Path("/tmp/a b[1].v")], "trigkit_top", "xcvu13p-flga2577-2-e", 3.125,
                     {"IN_BITS": 3})
    assert "read_verilog -sv {/tmp/a b[1].v}" in tcl  # braces: no command substitution


# --- 3. machine speed -----------------------------------------------------------------------


def test_a_slow_machine_is_marked_and_resumes_to_the_same_weights(workdir):
    epochs = {"epochs": 3, "patience": 10}
    reference = write_card(workdir, tiny_card(name="ref", training=epochs))
    Trainer(reference, progress=False, verbose=False).fit()
    # the same card on a machine so slow that the safety limit fires after the first epoch
    slow = write_card(workdir, tiny_card(training={**epochs, "max_minutes": 1e-9}))
    said: list[str] = []
    out = train_stage(slow, evaluate=False, progress=False, say=said.append)
    assert out["training"]["stopped_by"] == "time" and out["training"]["epochs"] == 1
    assert any("WARNING" in line and "safety limit" in line for line in said)
    report = yaml.safe_load((workdir / "build" / "tiny" / "report.json").read_text())
    assert report["training"]["stopped_by"] == "time"
    # the same command on a normal machine resumes it to the card's epochs
    normal = write_card(workdir, tiny_card(training=epochs))
    out = train_stage(normal, evaluate=False, progress=False, say=said.append)
    assert out["training"]["stopped_by"] == "epochs"
    a = read_checkpoint(workdir / "build" / "ref" / "last.pt")["model"]
    b = read_checkpoint(workdir / "build" / "tiny" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_default_cards_are_shaped_by_epochs_not_by_time():
    """Every shipped card's wall-clock limit is only a safety stop (an hour or more); what
    shapes the model is its epoch count and early stopping."""
    cards = sorted(Path(__file__).resolve().parents[1].glob("models/*.yaml"))
    assert cards
    for path in cards:
        training = yaml.safe_load(path.read_text()).get("training", {})
        assert training.get("max_minutes", 120) >= 60, path.name
        assert training.get("epochs", 0) >= 1, path.name


# --- 4. input files ---------------------------------------------------------------------------


@pytest.fixture
def events(workdir) -> Path:
    path = workdir / "ev.h5"
    write_h5(path, SimConfig(), "mixed", 64, 3)
    return path


def rewrite(src: Path, dst: Path, **changes) -> Path:
    """A copy of an event file with datasets replaced (None: removed)."""
    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for k, v in f.attrs.items():
            g.attrs[k] = v
        for k in f:
            if k not in changes:
                g.create_dataset(k, data=f[k][()])
        for k, v in changes.items():
            if v is not None:
                g.create_dataset(k, data=v)
    return dst


def test_show_refuses_images_of_the_wrong_shape(workdir, events):
    with h5py.File(events) as f:
        hits = f["hits"][()]
    bad = rewrite(events, workdir / "eight.h5", hits=hits[:, :8])
    code, out, err = run_cli("show", str(bad))
    assert code == 2 and "shape [8, 384]" in err and "9 layers" in err
    assert err.count("\n") == 1 and not (workdir / "eight_display.png").exists()


def test_truncated_and_garbage_files_get_one_line(workdir, events):
    data = events.read_bytes()
    (workdir / "cut.h5").write_bytes(data[: len(data) // 3])
    (workdir / "junk.h5").write_bytes(np.random.default_rng(0).bytes(5000))
    for name in ("cut.h5", "junk.h5"):
        for args in (("show", name), ("baseline", "--input", name, "--out", "b")):
            code, _, err = run_cli(*args)
            assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (args, err)
    assert not list(workdir.glob("*.png")) and not (workdir / "b").exists()


def test_baseline_refuses_a_wrong_shape_before_calibrating(workdir, events):
    with h5py.File(events) as f:
        hits = f["hits"][()]
    bad = rewrite(events, workdir / "narrow.h5", hits=hits[:, :, :100])
    code, _, err = run_cli("baseline", "--input", str(bad), "--out", "b", "--no-progress")
    assert code == 2 and "shape [9, 100]" in err
    assert not (workdir / "b").exists()  # failed before the roads (and their folder)


def test_train_data_with_a_bad_file_leaves_no_card(workdir, events):
    write_card(workdir, tiny_card(training={"epochs": 1}))
    bad = rewrite(events, workdir / "nolabel.h5", label=None)
    before = sorted(p.name for p in (workdir / "models").iterdir())
    code, _, err = run_cli("train", "--model", "tiny", "--data", str(bad), "--no-progress")
    assert code == 2 and "label" in err
    assert sorted(p.name for p in (workdir / "models").iterdir()) == before
    assert not (workdir / "build").exists()


def test_a_card_without_task_names_the_key(workdir):
    data = tiny_card()
    del data["task"]
    data["name"] = "notask"
    (workdir / "models" / "notask.yaml").write_text(yaml.safe_dump(data))
    code, _, err = run_cli("train", "--model", "notask")
    assert code == 2 and "missing required key task" in err and "positional" not in err


def test_a_file_without_configuration_must_fit_the_default_detector(workdir, events):
    with h5py.File(events) as f:
        hits, label = f["hits"][()], f["label"][()]
    with h5py.File(workdir / "noconfig8.h5", "w") as g:  # from elsewhere: no attributes
        g["hits"], g["label"] = hits[:, :8], label
    code, _, err = run_cli("show", "noconfig8.h5")
    assert code == 2 and "9 layers" in err and not (workdir / "noconfig8_display.png").exists()
    code, _, err = run_cli("baseline", "--input", "noconfig8.h5", "--out", "b")
    assert code == 2 and "9 layers" in err and not (workdir / "b").exists()
