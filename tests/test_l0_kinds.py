"""The L0 architecture kinds l0_road and l0_hitfeat and per-layer multi-bit weights: builders,
card checks, the row_clusters front end (numpy twin = torch twin = hand-written RTL), and a tiny
card of each kind through every stage (train, QONNX, reference, hls4ml C-sim, da4ml RTL, cocotb,
Yosys) with 0 mismatches."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
import yaml

from trigkit.core.card import ModelCard, load_card
from trigkit.core.config import from_dict
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.firmware.cocotb_runner import check_row_clusters
from trigkit.firmware.frontend import META_KEY, read_front_end
from trigkit.learn.frontend import RowClusters, row_clusters_numpy
from trigkit.learn.models import build_model, count_parameters, to_input, weight_memory_bits
from trigkit.learn.train import Trainer
from trigkit.pipeline.firmware import export_stage, rtl_stage, sim_stage, synth_stage

DATA = {"events": 1500, "seed": 5, "split": [0.6, 0.2, 0.2], "input_shape": [9, 64],
        "sim": {"detector": {"n_eta_bins": 64}}}
ROAD = {"name": "tiny_road", "task": "classification", "data": DATA,
        "architecture": {"kind": "l0_road", "eta_pool": 2, "channels": [4],
                         "kernels": [[0, 5]], "strides": [[1, 2]], "pool": [1, 1],
                         "dense": [8]},
        "quant": {"weights": "pow2", "weight_bits": [2, 4, 6],
                  "weight_scale": [0.25, 0.125, 0.0625], "act_bits": [3, 4]},
        "training": {"epochs": 2, "batch_size": 64, "lr": 5e-3, "threads": 1},
        "hardware": {"clock_ns": 3.125, "latency_cutoff_ns": 100}}
HITFEAT = {"name": "tiny_hitfeat", "task": "regression",
           "data": {**DATA, "seed": 6, "sample": "darkphoton", "target": "vtx_r",
                    "target_scale": 100.0,
                    "sim": {"detector": {"n_eta_bins": 64, "noise_rate": 0.0}}},
           "architecture": {"kind": "l0_hitfeat", "dense": [8]},
           "quant": {"weights": "pow2", "weight_bits": [6, 4],
                     "weight_scale": [0.0078125, 0.125], "act_bits": 6},
           "training": {"epochs": 2, "batch_size": 64, "lr": 5e-3, "threads": 1,
                        "loss": "huber", "huber_delta": 0.1},
           "hardware": {"clock_ns": 3.125, "latency_cutoff_ns": 100, "delay_constraint": 1}}


def _card(base: dict, **sections) -> ModelCard:
    data = json.loads(json.dumps(base))
    for key, value in sections.items():
        data[key] = {**data[key], **value}
    return from_dict(ModelCard, data)


def test_row_clusters_twins_agree():
    rng = np.random.default_rng(0)
    imgs = (rng.random((200, 9, 70)) < rng.choice([0.0, 0.01, 0.1, 0.6], (200, 9, 1)))
    imgs = imgs.astype(np.uint8)
    want = row_clusters_numpy(imgs)
    got = RowClusters(70)(torch.as_tensor(imgs).float().unsqueeze(1)).numpy()
    assert np.array_equal(got.astype(np.int64), want)
    img = np.zeros((1, 2, 10), np.uint8)
    img[0, 0, [2, 3, 7]] = 1  # row 0: clusters 2-3 and 7; row 1: empty
    # left = 2 + 3, right = 7 + 7, separation 10: e = 3, log = 48 + (160 >> 3) - 16 = 52
    assert row_clusters_numpy(img).tolist() == [[5, 0, 14, 0, 1, 0, 52, 0]]
    img[0, 0, :] = 1  # one cluster over the whole row: left = right = 0 + 9, log2 1 = 0
    assert row_clusters_numpy(img).tolist() == [[9, 0, 9, 0, 1, 0, 0, 0]]


def test_row_clusters_rtl_matches_twin(tmp_path):
    """hw/common/row_clusters.v alone, 2 groups of chunks per row, against the numpy twin."""
    res = check_row_clusters(4, 200, tmp_path / "sim")
    assert res["passed"] and res["mismatches"] == 0 and res["vectors"] > 100, res


def test_road_builds_roads_over_all_rows_and_a_global_max():
    card = _card(ROAD, quant={"weights": "float"})
    model = build_model(card)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].kernel_size == (9, 5) and convs[0].stride == (1, 2)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert pools[-1].kernel_size == (1, 14)  # (64 / 2 - 5) // 2 + 1 positions
    assert model(to_input(torch.zeros(3, 9, 64), card)).shape == (3, 3)


def test_per_layer_weight_bits_reach_the_graph_and_the_memory_count(tmp_path):
    from trigkit.firmware.export import brevitas_to_qonnx

    card = _card(ROAD)
    model = build_model(card).eval()
    mw = brevitas_to_qonnx(model, torch.zeros(1, 1, 9, 64))
    weight_bits = [int(mw.get_initializer(n.input[3])) for n in mw.graph.node
                   if n.op_type == "Quant" and mw.get_initializer(n.input[0]) is not None]
    scales = [float(mw.get_initializer(n.input[1])) for n in mw.graph.node
              if n.op_type == "Quant" and mw.get_initializer(n.input[0]) is not None]
    assert weight_bits == [2, 4, 6] and scales == [0.25, 0.125, 0.0625]
    n = [w.numel() for w in (m.weight for m in model.modules() if hasattr(m, "weight_quant"))]
    others = count_parameters(model) - sum(n)  # learned activation scales, at 32 bits
    assert weight_memory_bits(model, card) == 2 * n[0] + 4 * n[1] + 6 * n[2] + 32 * others


@pytest.mark.parametrize("sections, message", [
    ({"architecture": {"kernels": [[0, 5], [1, 3]]}}, "kernels has 2 entries for 1"),
    ({"quant": {"weights": "ternary", "weight_bits": 4}}, "use quant.weights: pow2"),
    ({"quant": {"weight_scale": [0.25, 0.3, 0.5]}}, "0.3 must be a power of two"),
    ({"quant": {"weight_bits": [2, 9, 4]}}, "quant.weight_bits"),
])
def test_bad_kinds_and_quantisers_are_refused(sections, message):
    with pytest.raises(ConfigError, match=message):
        _card(ROAD, **sections)


def test_delay_constraint_reaches_da4ml_and_is_range_checked():
    card = _card(HITFEAT)
    assert card.hardware.solver_options == {"hard_dc": 1}
    with pytest.raises(ConfigError, match="delay_constraint"):
        _card(HITFEAT, hardware={"delay_constraint": 9})


def test_front_end_value_ranges_bound_its_features():
    """The per-feature ranges the RTL tracer narrows its inputs to (hit flags 1 bit, logs 8
    bits at 384 columns) hold every value, and each bit is used."""
    from trigkit.firmware.frontend import RowClustersFrontEnd
    from trigkit.learn.frontend import row_clusters_value_bits

    assert row_clusters_value_bits(2, 384) == [10, 10, 10, 10, 1, 1, 8, 8]
    imgs = np.random.default_rng(1).random((2000, 9, 384)) < 0.02
    feats = RowClustersFrontEnd(9, 384).apply(imgs.astype(np.uint8))
    limits = np.array(row_clusters_value_bits(9, 384))
    assert (feats < (1 << limits)).all() and (feats >= (1 << (limits - 1))).any(axis=0).all()


def test_per_layer_lists_must_match_the_network():
    with pytest.raises(ConfigError, match="weight_bits lists 2 values but the network has more"):
        build_model(_card(ROAD, quant={"weight_bits": [2, 4], "weight_scale": 0.25}))


def test_unknown_front_end_metadata_is_refused():
    model = onnx.ModelProto()
    entry = model.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps({"kind": "row_clusters", "rows": 9, "width": -4})
    with pytest.raises(TrigkitError, match="must be integers"):
        read_front_end(model)
    entry.value = '{"kind": "shell", "cmd": "rm"}'
    with pytest.raises(TrigkitError, match="not a known front end"):
        read_front_end(model)


@pytest.mark.parametrize("card_dict", [ROAD, HITFEAT], ids=["l0_road", "l0_hitfeat"])
def test_tiny_card_of_each_kind_through_every_stage(workdir, card_dict):
    name = card_dict["name"]
    (workdir / "models" / f"{name}.yaml").write_text(yaml.safe_dump(card_dict))
    card = load_card(name)
    Trainer(card, progress=False, verbose=False).fit()
    export_stage(card, vectors=300, progress=False, say=lambda _m: None)
    rtl_stage(card, say=lambda _m: None)
    sim_stage(card, say=lambda _m: None)
    synth_stage(card, tool="yosys", say=lambda _m: None)
    report = json.loads((workdir / "build" / name / "report.json").read_text())
    exact = report["bit_exact"]
    assert exact["vectors"] >= 300
    assert {k: v for k, v in exact.items() if k != "vectors"} == {
        "qonnx_vs_ref": 0, "brevitas_vs_ref": 0, "hls_csim_vs_ref": 0, "trace_vs_ref": 0,
        "rtl_vs_ref": 0}
    assert report["synth"]["lut"] > 0 and report["synth"]["dsp"] == 0
    rtl = json.loads((workdir / "hw" / name / "rtl.json").read_text())
    if card_dict is HITFEAT:  # the front end is in the design and its latency
        assert rtl["front_end"]["latency_cycles"] == 4
        assert rtl["input"]["shape"] == [9, 64] and rtl["input"]["element_bits"] == 1
        assert "row_clusters.v" in rtl["common_sources"]


def test_scan_spaces_of_the_new_cards_are_valid_and_small_floats_survive_overrides():
    """json.dumps writes 1e-05 for small floats, which YAML 1.1 would read as a string."""
    from trigkit.core.config import parse_override
    from trigkit.pipeline.scan.space import read_space

    assert parse_override("training.sparsity_l1=1e-05") == (["training", "sparsity_l1"], 1e-05)
    assert parse_override("data.sample=mixed")[1] == "mixed"
    for name, n_params in (("l0_pointing_tnn", 8), ("l0_vertex_tnn", 5)):
        space = read_space(f"models/spaces/{name}.yaml", load_card(name))
        assert len(space.params) == n_params


@pytest.mark.parametrize("base, monitor", [(ROAD, "val_accuracy"), (HITFEAT, "val_loss")],
                         ids=["classification", "regression"])
def test_several_seeds_ship_the_best_on_validation(workdir, base, monitor):
    """training.seeds: each seed in its own folder, the shipped best.pt is the seed with the
    best validation value, and the report holds every seed's test metric."""
    from trigkit.pipeline.training import train_stage

    card_dict = {**base, "name": "tiny_seeds", "quant": {"weights": "float"},
                 "training": {**base["training"], "seeds": 3, "monitor": monitor}}
    (workdir / "models" / "tiny_seeds.yaml").write_text(yaml.safe_dump(card_dict))
    outcome = train_stage(load_card("tiny_seeds"), evaluate=False, progress=False,
                          say=lambda _m: None)
    seeds = outcome["training"]["seeds"]
    assert seeds["seeds"] == [0, 1, 2] and len(seeds["test"]) == 3
    best = max if monitor == "val_accuracy" else min
    assert seeds["validation"][seeds["seeds"].index(seeds["chosen"])] == best(seeds["validation"])
    assert np.isclose(seeds["test_mean"], np.mean(seeds["test"]))
    out = workdir / "build" / "tiny_seeds"
    chosen = out / "seeds" / f"seed{seeds['chosen']}" / "best.pt"
    assert (out / "best.pt").read_bytes() == chosen.read_bytes()


def test_fixed_front_end_runs_once_and_training_is_unchanged(workdir, monkeypatch):
    """The fixed front end is applied once per split (the MLP trains on its features, teacher
    included) and gives the same losses as running it on every batch."""
    teacher = {**HITFEAT, "name": "tiny_teacher", "quant": {"weights": "float"}}
    student = {**HITFEAT, "training": {**HITFEAT["training"],
                                       "distill": {"teacher": "tiny_teacher", "weight": 0.3}}}
    for card_dict in (teacher, student):
        (workdir / "models" / f"{card_dict['name']}.yaml").write_text(yaml.safe_dump(card_dict))
    Trainer(load_card("tiny_teacher"), progress=False, verbose=False).fit()
    calls = []
    original = RowClusters.forward
    monkeypatch.setattr(RowClusters, "forward",
                        lambda self, x: calls.append(len(x)) or original(self, x))
    once = Trainer(load_card("tiny_hitfeat"), progress=False, verbose=False).fit(fresh=True)
    assert sum(calls) == 1500  # every event of the three splits, once
    monkeypatch.setattr(Trainer, "_fixed_front_end", lambda self, model, splits, aug:
                        (model, splits))
    calls.clear()
    every = Trainer(load_card("tiny_hitfeat"), progress=False, verbose=False).fit(fresh=True)
    assert sum(calls) > 2 * 1500  # student and teacher, every epoch
    drop = ("seconds",)
    assert [{k: v for k, v in row.items() if k not in drop} for row in once.history] == [
        {k: v for k, v in row.items() if k not in drop} for row in every.history]
