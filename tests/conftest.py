import numpy as np
import pytest

from trigkit.l0.detector import SimConfig


@pytest.fixture
def cfg() -> SimConfig:
    return SimConfig()


@pytest.fixture
def quiet_cfg() -> SimConfig:
    """Ideal detector: full efficiency, single-strip clusters, no noise, no scattering."""
    return SimConfig().replace(detector={
        "efficiency": 1.0, "cluster_size_probs": [1.0], "noise_rate": 0.0, "material_x0": 0.0,
    })


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A project directory with models/ and build/ (the cards' relative paths)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    return tmp_path
