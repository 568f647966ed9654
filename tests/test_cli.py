"""The command line as users meet it: one-line errors, exit codes, no partial files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TRIGKIT = [str(Path(sys.executable).with_name("trigkit"))]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*TRIGKIT, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "detector.bogus=1"], "unknown key detector.bogus; allowed keys"),
        (["--noise", "-0.1"], "detector.noise_rate = -0.1 is out of range; allowed [0, 0.1]"),
        (["--efficiency", "1.5"], "detector.efficiency = 1.5 is out of range; allowed [0, 1]"),
        (["--set", "detector.eta_max=1.4"], "detector.eta_max = 1.4 is out of range"),
        (["--set", "detector.eta_max=0.5"], "does not fit the detector image range"),
        (["--set", "detector.cluster_size_probs=[0.5,0.2]"], "must sum to 1"),
        (["--sample", "muons"], "--sample 'muons' unknown"),
        (["--events", "0"], "--events = 0"),
        (["--out", "no/such/dir/x.h5"], "output directory no/such/dir does not exist"),
    ],
)
def test_bad_input_gives_one_line_error_and_no_file(tmp_path, extra, message):
    args = {"--sample": "mixed", "--events": "50", "--out": "x.h5"}
    for k, v in zip(extra[::2], extra[1::2], strict=True):
        args[k] = v
    flat = [s for kv in args.items() for s in kv]
    res = run("simulate", *flat, "--no-progress", cwd=tmp_path)
    assert res.returncode == 2
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trigkit: error: ")
    assert message in err[0]
    assert list(tmp_path.iterdir()) == []


def test_bad_yaml_config_file(tmp_path):
    (tmp_path / "c.yaml").write_text("detector:\n  noise_rate: 0.002\n  efficency: 0.9\n")
    res = run("simulate", "--sample", "noise", "--events", "10", "--out", "x.h5",
              "--config", "c.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "unknown key detector.efficency" in res.stderr
    res = run("simulate", "--sample", "noise", "--events", "10", "--out", "x.h5",
              "--config", "missing.yaml", cwd=tmp_path)
    assert res.returncode == 2 and "config file missing.yaml not found" in res.stderr


def test_simulate_refuses_to_overwrite_without_flag(tmp_path):
    (tmp_path / "x.h5").write_bytes(b"precious")
    res = run("simulate", "--sample", "noise", "--events", "10", "--out", "x.h5", cwd=tmp_path)
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (tmp_path / "x.h5").read_bytes() == b"precious"
    res = run("simulate", "--sample", "noise", "--events", "10", "--out", "x.h5", "--overwrite",
              "--no-progress", cwd=tmp_path)
    assert res.returncode == 0 and (tmp_path / "x.h5").read_bytes()[:4] == b"\x89HDF"


def test_interrupted_write_leaves_no_partial_file(tmp_path, cfg, monkeypatch):
    from trigkit.l0 import simulate as sim

    calls = {"n": 0}
    real = sim.simulate_chunk

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] > 2:  # template + first chunk succeed, then the "machine dies"
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sim, "simulate_chunk", failing)
    with pytest.raises(KeyboardInterrupt):
        sim.write_h5(tmp_path / "big.h5", cfg, "mixed", 3 * sim.CHUNK_EVENTS, 1)
    assert list(tmp_path.iterdir()) == []


def test_simulate_show_and_baseline_on_a_file(tmp_path):
    res = run("simulate", "--sample", "mixed", "--events", "3000", "--seed", "1", "--out", "m.h5",
              "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = run("show", "m.h5", "--events", "4", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "m_display.png").read_bytes()[:4] == b"\x89PNG"
    res = run("baseline", "--input", "m.h5", "--mode", "high", "--calib-events", "3000",
              "--out", "b", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    d = np.load(tmp_path / "b" / "decisions.npz")
    assert d["decision_high"].shape == (3000,) and d["decision_high"].dtype == bool
    assert (tmp_path / "b" / "roads_high.json").is_file()
    label = d["label"]
    # prompt muons fire far more often than noise-only events
    assert d["decision_high"][label == 1].mean() > 0.3 > d["decision_high"][label == 0].mean()
    # reuse the saved roads
    res = run("baseline", "--input", "m.h5", "--mode", "high", "--roads", "b/roads_high.json",
              "--out", "b2", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    d2 = np.load(tmp_path / "b2" / "decisions.npz")
    np.testing.assert_array_equal(d["decision_high"], d2["decision_high"])


def test_baseline_study_writes_report_and_plots(tmp_path):
    res = run("baseline", "--out", "s", "--mode", "high", "--calib-events", "3000",
              "--turn-on-events", "3000", "--noise-events", "2000", "--signal-events", "1000",
              "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "s"
    for f in ("baseline.json", "baseline.md", "roads_high.json", "plots/turn_on.png",
              "plots/noise_scan.png"):
        assert (out / f).is_file(), f
    import json

    r = json.loads((out / "baseline.json").read_text())["modes"]["high"]
    assert r["eff_prompt_above_threshold"] > r["eff_prompt_below_threshold"]
    assert r["eff_nonpointing"] < r["eff_prompt_above_threshold"]
