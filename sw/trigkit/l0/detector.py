"""Detector description and simulation configuration for one L0 barrel phi sector.

The toy detector (all values configurable; see sw/docs/simulation.md)
--------------------------------------------------------------------
Only the bending plane (R-z) is simulated: the toroid bends muons in R-z, the plane the RPC eta
strips measure. One phi sector's eta strips form an image of 9 rows x 384 columns.

Rows (RPC layers, radius R in metres)::

    row  name  station  R [m]       row  name   station  R [m]
    0    BI1   BI       4.750       5    BM2a   BM2      7.500   <- pivot doublet
    1    BI2   BI       4.775       6    BM2b   BM2      7.520
    2    BI3   BI       4.800       7    BO1    BO       9.800
    3    BM1a  BM1      6.800       8    BO2    BO       9.820
    4    BM1b  BM1      6.820

Strip-to-eta mapping: every layer's strips are projected onto 384 common pseudorapidity bins,
``column = floor(384 * (eta - eta_min) / (eta_max - eta_min))`` with ``eta = asinh(z / R)`` of the
hit point as seen from the nominal interaction point (default eta range [0, 1], i.e. 0.0026 per
bin, 1.8 cm at R = 6.8 m and eta = 0 up to 3.3 cm at R = 9.8 m and eta = 1, close to the 3 cm
strip pitch). With this mapping a straight track from the IP lands in the same column in every
row, so coincidence roads are windows in column space.

Field map: field-free for R < ``field_start_m`` (6 m); a uniform toroidal field of
``field_tesla`` (0.5 T) beyond it. The field is along phi, so the whole momentum p = pT cosh(eta)
is transverse to it and the track is a circle of radius rho = p / (0.3 B) (6.67 m per GeV at
0.5 T); the charge sets the bending direction.

Material: the calorimeters are one thin scatterer at ``scatter_radius_m`` (4 m) of
``material_x0`` radiation lengths (100); each muon gets a Gaussian multiple-scattering kick
(Highland formula). Energy loss is not modelled.

Detector response: per-layer hit efficiency (0.95); cluster size 1, 2 or 3 strips with
probabilities ``cluster_size_probs`` (0.75, 0.20, 0.05: a neighbouring strip fires 25 % of the
time), the second strip on the side nearer to the crossing point; uncorrelated noise per strip
per bunch crossing ``noise_rate`` (1e-3); optional correlated cavern background: ``tracklet_rate``
short fake straight tracklets per event within one station, and ``burst_rate`` bursts of 2 to
``burst_max_strips`` adjacent strips in one layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trigkit.core.config import apply_overrides, from_dict, load_yaml, require_range, to_dict
from trigkit.core.errors import ConfigError

#: Barrel RPC acceptance: an image's eta range must lie inside |eta| <= this.
BARREL_ETA_LIMIT = 1.05

SAMPLES = ("noise", "prompt", "nonpointing", "darkphoton", "mixed")
#: Class label of every event type (mixed files carry the label of each event's own type).
LABELS = {"noise": 0, "prompt": 1, "nonpointing": 2, "darkphoton": 3}
LABEL_NAMES = {v: k for k, v in LABELS.items()}


def _default_names() -> tuple[str, ...]:
    return ("BI1", "BI2", "BI3", "BM1a", "BM1b", "BM2a", "BM2b", "BO1", "BO2")


def _default_radii() -> tuple[float, ...]:
    return (4.75, 4.775, 4.80, 6.80, 6.82, 7.50, 7.52, 9.80, 9.82)


def _default_stations() -> dict[str, tuple[int, ...]]:
    return {"BI": (0, 1, 2), "BM1": (3, 4), "BM2": (5, 6), "BO": (7, 8)}


@dataclass(frozen=True)
class DetectorConfig:
    """Geometry, field and response of one barrel sector (units: metres, tesla, GeV).

    Attributes:
        layer_names: one name per image row, inside-out.
        layer_radii_m: radius of each row's RPC layer; strictly increasing.
        stations: station name -> rows; used by the coincidence trigger.
        pivot_station: the station whose hits open the coincidence roads (BM2 = RPC2).
        eta_min, eta_max: pseudorapidity range covered by the image columns.
        n_eta_bins: number of image columns (384).
        field_start_m: radius where the toroidal field starts (field-free inside).
        field_tesla: toroidal field strength.
        scatter_radius_m: radius of the equivalent thin scatterer (calorimeters).
        material_x0: thickness of that scatterer in radiation lengths (0 disables scattering).
        efficiency: hit efficiency, one value for all layers or one per layer, in [0, 1].
        cluster_size_probs: probabilities of clusters of 1, 2, 3 strips (sum to 1).
        noise_rate: uncorrelated noise probability per strip per bunch crossing, in [0, 0.1].
        tracklet_rate: mean number of fake cavern-background tracklets per event (Poisson).
        burst_rate: mean number of noise bursts per event (Poisson).
        burst_max_strips: largest burst width in strips (>= 2).
    """

    layer_names: tuple[str, ...] = field(default_factory=_default_names)
    layer_radii_m: tuple[float, ...] = field(default_factory=_default_radii)
    stations: dict[str, tuple[int, ...]] = field(default_factory=_default_stations)
    pivot_station: str = "BM2"
    eta_min: float = 0.0
    eta_max: float = 1.0
    n_eta_bins: int = 384
    field_start_m: float = 6.0
    field_tesla: float = 0.5
    scatter_radius_m: float = 4.0
    material_x0: float = 100.0
    efficiency: float | tuple[float, ...] = 0.95
    cluster_size_probs: tuple[float, ...] = (0.75, 0.20, 0.05)
    noise_rate: float = 1e-3
    tracklet_rate: float = 0.0
    burst_rate: float = 0.0
    burst_max_strips: int = 8

    def validate(self) -> None:
        n = len(self.layer_radii_m)
        if n < 2:
            raise ConfigError("detector.layer_radii_m needs at least 2 layers")
        if len(self.layer_names) != n:
            raise ConfigError(
                f"detector.layer_names has {len(self.layer_names)} entries but layer_radii_m has "
                f"{n}; give one name per layer"
            )
        radii = np.asarray(self.layer_radii_m)
        if np.any(radii <= 0) or np.any(np.diff(radii) <= 0):
            raise ConfigError("detector.layer_radii_m must be positive and strictly increasing")
        for name, rows in self.stations.items():
            for r in rows:
                if not 0 <= r < n:
                    raise ConfigError(
                        f"detector.stations.{name} refers to row {r}; allowed rows 0..{n - 1}"
                    )
        if self.pivot_station not in self.stations:
            raise ConfigError(
                f"detector.pivot_station {self.pivot_station!r} is not a station; allowed: "
                + ", ".join(self.stations)
            )
        require_range("detector.eta_min", self.eta_min, -BARREL_ETA_LIMIT, BARREL_ETA_LIMIT)
        require_range("detector.eta_max", self.eta_max, -BARREL_ETA_LIMIT, BARREL_ETA_LIMIT)
        if self.eta_max <= self.eta_min:
            raise ConfigError(
                f"detector eta range [{self.eta_min:g}, {self.eta_max:g}] is empty; "
                "eta_max must exceed eta_min"
            )
        require_range("detector.n_eta_bins", self.n_eta_bins, 1, 65536)
        require_range("detector.field_start_m", self.field_start_m, 0.0)
        require_range("detector.field_tesla", self.field_tesla, 0.0)
        require_range("detector.scatter_radius_m", self.scatter_radius_m, 0.0)
        require_range("detector.material_x0", self.material_x0, 0.0)
        if self.scatter_radius_m > self.field_start_m:
            raise ConfigError(
                f"detector.scatter_radius_m = {self.scatter_radius_m:g} must not exceed "
                f"detector.field_start_m = {self.field_start_m:g} (the scatterer is field-free)"
            )
        effs = self.efficiencies
        if len(effs) != n:
            raise ConfigError(
                f"detector.efficiency has {len(effs)} values for {n} layers; "
                "give one value or one per layer"
            )
        if isinstance(self.efficiency, int | float):
            require_range("detector.efficiency", self.efficiency, 0.0, 1.0)
        for i, e in enumerate(effs):
            require_range(f"detector.efficiency[{self.layer_names[i]}]", e, 0.0, 1.0)
        if not 1 <= len(self.cluster_size_probs) <= 3:
            raise ConfigError("detector.cluster_size_probs needs 1 to 3 values (sizes 1, 2, 3)")
        for i, p in enumerate(self.cluster_size_probs):
            require_range(f"detector.cluster_size_probs[{i}]", p, 0.0, 1.0)
        if abs(sum(self.cluster_size_probs) - 1.0) > 1e-6:
            raise ConfigError(
                f"detector.cluster_size_probs sum to {sum(self.cluster_size_probs):g}; "
                "they must sum to 1"
            )
        require_range("detector.noise_rate", self.noise_rate, 0.0, 0.1)
        require_range("detector.tracklet_rate", self.tracklet_rate, 0.0, 100.0)
        require_range("detector.burst_rate", self.burst_rate, 0.0, 100.0)
        require_range("detector.burst_max_strips", self.burst_max_strips, 2, 64)

    # ---- derived geometry -------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layer_radii_m)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.n_layers, self.n_eta_bins)

    @property
    def efficiencies(self) -> tuple[float, ...]:
        if isinstance(self.efficiency, int | float):
            return (float(self.efficiency),) * len(self.layer_radii_m)
        return tuple(self.efficiency)

    @property
    def eta_per_bin(self) -> float:
        return (self.eta_max - self.eta_min) / self.n_eta_bins

    def eta_to_column(self, eta: np.ndarray | float) -> np.ndarray:
        """Continuous column coordinate of pseudorapidity ``eta`` (floor gives the bin)."""
        return (np.asarray(eta, dtype=np.float64) - self.eta_min) / self.eta_per_bin

    def station_of_row(self) -> dict[int, str]:
        return {r: name for name, rows in self.stations.items() for r in rows}

    def bending_radius_m(self, p_gev: np.ndarray | float) -> np.ndarray:
        """Radius of curvature in the toroid for momentum ``p_gev`` (inf without field)."""
        if self.field_tesla == 0:
            return np.full_like(np.asarray(p_gev, dtype=np.float64), np.inf)
        return np.asarray(p_gev, dtype=np.float64) / (0.299792458 * self.field_tesla)


@dataclass(frozen=True)
class GeneratorConfig:
    """What the samples contain (pT in GeV, lengths in metres, angles in radians).

    Attributes:
        pt_min_gev, pt_max_gev: muon pT range (uniform) for ``prompt`` and ``nonpointing``.
        eta_min, eta_max: direction range (uniform in eta) of prompt muons, of non-pointing muon
            origins and of dark photons; must lie inside the detector's image eta range.
        vertex_z_sigma_m: Gaussian longitudinal spread of the interaction point (luminous region).
        nonpointing_r_min_m, nonpointing_r_max_m: radius range of non-pointing muon origins.
        nonpointing_dtheta_min, nonpointing_dtheta_max: range of |theta_mu - theta_origin|, the
            angle between the muon and the line from the IP to its origin (random sign).
        darkphoton_r_min_m, darkphoton_r_max_m: decay-radius range (uniform) of gamma_d -> mu mu.
        darkphoton_opening_min, darkphoton_opening_max: opening angle theta(mu, mu) in the R-z
            plane (uniform).
        darkphoton_pt_min_gev, darkphoton_pt_max_gev: pT range of each muon (uniform).
        mixed_fractions: event-type fractions of the ``mixed`` sample (noise, prompt,
            nonpointing, darkphoton); normalised to 1.
        require_pivot_crossing: regenerate muon events until a muon crosses the pivot station
            inside the image, i.e. keep only muons in the sector's acceptance.
    """

    pt_min_gev: float = 3.0
    pt_max_gev: float = 50.0
    eta_min: float = 0.05
    eta_max: float = 0.95
    vertex_z_sigma_m: float = 0.05
    nonpointing_r_min_m: float = 0.5
    nonpointing_r_max_m: float = 4.5
    nonpointing_dtheta_min: float = 0.05
    nonpointing_dtheta_max: float = 0.5
    darkphoton_r_min_m: float = 0.5
    darkphoton_r_max_m: float = 4.5
    darkphoton_opening_min: float = 0.05
    darkphoton_opening_max: float = 0.2
    darkphoton_pt_min_gev: float = 20.0
    darkphoton_pt_max_gev: float = 50.0
    mixed_fractions: dict[str, float] = field(
        default_factory=lambda: {"noise": 0.25, "prompt": 0.375, "nonpointing": 0.375,
                                 "darkphoton": 0.0}
    )
    require_pivot_crossing: bool = True

    def validate(self) -> None:
        require_range("generator.pt_min_gev", self.pt_min_gev, 0.0, lo_open=True)
        require_range("generator.pt_max_gev", self.pt_max_gev, self.pt_min_gev)
        require_range("generator.eta_max", self.eta_max, self.eta_min)
        require_range("generator.vertex_z_sigma_m", self.vertex_z_sigma_m, 0.0, 1.0)
        require_range("generator.nonpointing_r_min_m", self.nonpointing_r_min_m, 0.0)
        require_range("generator.nonpointing_r_max_m", self.nonpointing_r_max_m,
                      self.nonpointing_r_min_m)
        require_range("generator.nonpointing_dtheta_min", self.nonpointing_dtheta_min, 0.0, 1.5)
        require_range("generator.nonpointing_dtheta_max", self.nonpointing_dtheta_max,
                      self.nonpointing_dtheta_min, 1.5)
        require_range("generator.darkphoton_r_min_m", self.darkphoton_r_min_m, 0.0)
        require_range("generator.darkphoton_r_max_m", self.darkphoton_r_max_m,
                      self.darkphoton_r_min_m)
        require_range("generator.darkphoton_opening_min", self.darkphoton_opening_min, 0.0, 1.0)
        require_range("generator.darkphoton_opening_max", self.darkphoton_opening_max,
                      self.darkphoton_opening_min, 1.0)
        require_range("generator.darkphoton_pt_min_gev", self.darkphoton_pt_min_gev, 0.0,
                      lo_open=True)
        require_range("generator.darkphoton_pt_max_gev", self.darkphoton_pt_max_gev,
                      self.darkphoton_pt_min_gev)
        unknown = sorted(set(self.mixed_fractions) - set(LABELS))
        if unknown:
            raise ConfigError(
                f"generator.mixed_fractions has unknown type {unknown[0]!r}; allowed: "
                + ", ".join(LABELS)
            )
        for k, v in self.mixed_fractions.items():
            require_range(f"generator.mixed_fractions.{k}", v, 0.0)
        if sum(self.mixed_fractions.values()) <= 0:
            raise ConfigError("generator.mixed_fractions must have a positive sum")


@dataclass(frozen=True)
class SimConfig:
    """Complete simulation configuration: ``detector`` and ``generator`` sections."""

    detector: DetectorConfig = field(default_factory=DetectorConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)

    def validate(self) -> None:
        d, g = self.detector, self.generator
        if g.eta_min < d.eta_min or g.eta_max > d.eta_max:
            raise ConfigError(
                f"generator eta range [{g.eta_min:g}, {g.eta_max:g}] does not fit the detector "
                f"image range [{d.eta_min:g}, {d.eta_max:g}]; allowed generator.eta_min >= "
                f"{d.eta_min:g} and generator.eta_max <= {d.eta_max:g}"
            )
        theta_lo = 2 * math.atan(math.exp(-g.eta_max))
        if theta_lo <= 0:
            raise ConfigError("generator.eta_max is too large")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimConfig:
        return from_dict(cls, data)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def replace(self, **sections: Any) -> SimConfig:
        """Return a copy with fields of sections replaced, e.g. ``detector={'noise_rate': 0}``."""
        data = self.to_dict()
        for name, changes in sections.items():
            data[name].update(changes)
        return SimConfig.from_dict(data)


def load_sim_config(
    path: str | Path | None = None, overrides: list[str] | None = None
) -> SimConfig:
    """Load a SimConfig from an optional YAML file plus ``section.key=value`` overrides."""
    data: dict[str, Any] = load_yaml(path) if path else {}
    if overrides:
        data = apply_overrides(data, overrides)
    return SimConfig.from_dict(data)
