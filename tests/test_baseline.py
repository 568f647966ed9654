import numpy as np
import pytest

from trigkit.core.config import from_dict
from trigkit.core.errors import ConfigError, TrigkitError
from trigkit.l0.baseline import (
    BaselineConfig,
    Roads,
    calibrate_roads,
    efficiency,
    fake_rate_hz,
    nearest_hit_distance,
    run_trigger,
)
from trigkit.l0.simulate import simulate

ROWS = {"BI": [0, 1, 2], "BM1": [3, 4], "BM2": [5, 6], "BO": [7, 8]}


def roads(mode: str, w: int = 2, regions: int = 8) -> Roads:
    return Roads(BaselineConfig(mode=mode), np.full((regions, 9), w, dtype=np.int64))


def image(layers: dict[int, int]) -> np.ndarray:
    img = np.zeros((1, 9, 384), dtype=np.uint8)
    for row, col in layers.items():
        img[0, row, col] = 1
    return img


def fires(img: np.ndarray, mode: str, cfg, w: int = 2) -> bool:
    return bool(run_trigger(img, cfg.detector, roads(mode, w))[0][0])


def test_full_straight_track_fires_every_mode_with_roi(cfg):
    img = image({r: 100 for r in range(9)})
    for mode in ("low", "high", "phase2"):
        decision, roi = run_trigger(img, cfg.detector, roads(mode))
        assert decision[0] and roi[0] == 100


def test_empty_event_never_fires(cfg):
    for mode in ("low", "high", "phase2"):
        assert not fires(image({}), mode, cfg)


def test_low_pt_needs_three_of_four_bm_layers(cfg):
    assert fires(image({3: 50, 5: 50, 6: 50}), "low", cfg)      # 3 of 4
    assert not fires(image({3: 50, 5: 50}), "low", cfg)         # 2 of 4
    assert not fires(image({3: 50, 4: 50, 0: 50, 7: 50}), "low", cfg)  # no pivot hit


def test_high_pt_needs_a_bo_hit_inside_the_road(cfg):
    bm = {3: 200, 4: 200, 5: 200, 6: 200}
    assert not fires(image(bm), "high", cfg)
    assert fires(image({**bm, 8: 202}), "high", cfg, w=2)
    assert not fires(image({**bm, 8: 203}), "high", cfg, w=2)   # just outside the road
    assert fires(image({**bm, 8: 198}), "high", cfg, w=2)


def test_phase2_three_of_four_stations(cfg):
    # BI (2 of 3) + BM2 + BO, no BM1: three stations
    assert fires(image({0: 10, 1: 10, 5: 10, 7: 10}), "phase2", cfg)
    # BI with only one layer does not count as a station
    assert not fires(image({0: 10, 5: 10, 7: 10}), "phase2", cfg)
    # three stations but no pivot hit: the road is never opened
    assert not fires(image({0: 10, 1: 10, 3: 10, 7: 10}), "phase2", cfg)


def test_roads_at_the_image_edges(cfg):
    for col in (0, 383):
        assert fires(image({r: col for r in range(9)}), "high", cfg)


def test_road_widths_depend_on_eta_region(cfg):
    w = np.full((8, 9), 0, dtype=np.int64)
    w[7, 8] = 3  # the last region has a wider BO road
    r = Roads(BaselineConfig(mode="high"), w)
    bm = {3: 0, 4: 0, 5: 0, 6: 0}
    shifted = lambda c: image({**{k: c for k in bm}, 8: c + 3})  # noqa: E731
    assert not run_trigger(shifted(10), cfg.detector, r)[0][0]
    assert run_trigger(shifted(370), cfg.detector, r)[0][0]


def test_noise_hits_can_fake_a_trigger_only_inside_roads(cfg):
    img = image({5: 100, 3: 101, 4: 99, 7: 100})
    assert fires(img, "high", cfg, w=1)
    assert not fires(img, "high", cfg, w=0)


def test_nearest_hit_distance_against_brute_force(rng):
    hits = (rng.random((20, 9, 384)) < 0.01).astype(np.uint8)
    d = nearest_hit_distance(hits)
    cols = np.arange(384)
    for i in range(20):
        for row in range(9):
            on = np.flatnonzero(hits[i, row])
            want = (np.abs(cols[:, None] - on[None, :]).min(axis=1) if on.size
                    else np.full(384, np.inf))
            np.testing.assert_array_equal(d[i, row], want)


@pytest.fixture(scope="module")
def calibrated():
    from trigkit.l0.detector import SimConfig

    cfg = SimConfig()
    return cfg, {thr: calibrate_roads(cfg, BaselineConfig(mode="high", threshold_gev=thr,
                                                           calib_events=6000))
                 for thr in (10.0, 25.0)}


def test_calibration_reaches_the_target_at_threshold(calibrated):
    cfg, by_thr = calibrated
    for thr, r in by_thr.items():
        assert 0.90 <= r.efficiency_at_threshold <= 0.97
        # independent sample at exactly the threshold, judged against unlimited roads
        c = cfg.replace(generator={"pt_min_gev": thr, "pt_max_gev": thr},
                        detector={"noise_rate": 0})
        ev = simulate(c, "prompt", 4000, 99)
        open_roads = Roads(r.config, np.full_like(r.half_widths, 384))
        rel = run_trigger(ev["hits"], cfg.detector, r)[0].mean() / run_trigger(
            ev["hits"], cfg.detector, open_roads)[0].mean()
        assert rel == pytest.approx(r.efficiency_at_threshold, abs=0.03)


def test_higher_threshold_gives_narrower_outer_roads_and_a_turn_on(calibrated):
    cfg, by_thr = calibrated
    assert by_thr[25.0].half_widths[:, 7:].sum() < by_thr[10.0].half_widths[:, 7:].sum()
    ev = simulate(cfg, "prompt", 6000, 5)
    fired = run_trigger(ev["hits"], cfg.detector, by_thr[25.0])[0]
    low, high = ev["pt"] < 8, ev["pt"] > 40
    assert fired[low].mean() < 0.1 and fired[high].mean() > 0.9


def test_roads_save_and_load(tmp_path, calibrated):
    _, by_thr = calibrated
    p = by_thr[10.0].save(tmp_path / "roads.json")
    back = Roads.load(p)
    np.testing.assert_array_equal(back.half_widths, by_thr[10.0].half_widths)
    assert back.config == by_thr[10.0].config
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TrigkitError, match="not JSON"):
        Roads.load(tmp_path / "bad.json")
    with pytest.raises(TrigkitError, match="not found"):
        Roads.load(tmp_path / "missing.json")


def test_wrong_image_shape_is_refused(cfg):
    with pytest.raises(TrigkitError, match="shape"):
        run_trigger(np.zeros((2, 8, 384), np.uint8), cfg.detector, roads("high"))


def test_baseline_config_is_validated():
    with pytest.raises(ConfigError, match="target_efficiency"):
        from_dict(BaselineConfig, {"target_efficiency": 1.5})
    with pytest.raises(ConfigError, match="mode"):
        from_dict(BaselineConfig, {"mode": "medium"})


def test_efficiency_intervals_and_rates():
    e, lo, hi = efficiency(np.array([True] * 9 + [False]))
    assert e == 0.9 and lo < 0.9 < hi
    e, lo, hi = efficiency(np.zeros(100, bool))
    assert e == 0 and lo == 0 and 0 < hi < 0.05
    r = fake_rate_hz(np.zeros(1000, bool))
    assert r["rate_hz"] == 0 and r["rate_hz_ul95"] == pytest.approx(40e6 * 0.00299, rel=0.01)
