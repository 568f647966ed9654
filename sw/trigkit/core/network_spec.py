"""The network sections of a model card: ``architecture`` (:class:`ArchSpec`) and ``quant``
(:class:`QuantSpec`); :mod:`trigkit.core.card` assembles them with the other sections."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from .config import require_range
from .errors import ConfigError


@dataclass(frozen=True)
class ArchSpec:
    """Network architecture (FPGA-minded: input reduction, few channels, valid convolutions).

    Attributes:
        kind: ``l0_cnn``/``cnn`` (convolutional, for images; ``cnn`` also takes multi-channel
            (C, H, W) inputs), ``l0_road`` (eta roads: convolutions whose first kernel spans
            every detector row, then a max over all eta positions: "some road fired
            anywhere"), ``l0_hitfeat`` (a fixed integer front end, per row the first and last
            fired strip and a hit flag, then an MLP; the front end is firmware too), ``mlp``,
            ``autoencoder`` (convolutional, reconstructs its input), ``wgan`` (WGAN-GP
            generator + critic for images), ``pixel_wgan`` (WGAN-GP on the set of hit pixels
            of sparse images: permutation-equivariant generator and critic, one equivariant
            layer per entry of ``dense``, width its largest entry) or ``flow`` (a conditional
            normalizing flow of the table features given the last one, e.g. a mass; zuko MAF;
            task ``density``).
        eta_pool: OR-pool (max-pool) of this many adjacent eta columns at the input.
        channels: output channels of each convolution (valid padding).
        kernel: convolution kernel (rows, columns) of every convolution without an entry in
            ``kernels``.
        kernels: per-convolution kernels (rows, columns); rows 0 means all remaining rows.
        strides: per-convolution strides (rows, columns); default (1, 1).
        global_max: after the convolutions, the maximum over all eta positions (kept per row
            and channel); default for ``l0_road``.
        pool: max-pool after each convolution (rows, columns); (1, 1) for none.
        dense: hidden dense layer widths.
        dropout: dropout probability after hidden dense layers (float models).
        batchnorm: batch normalisation after convolutions (float models only).
        padding: convolution padding, ``valid`` or ``same``.
        latent_dim: bottleneck width (autoencoder) or noise dimension (wgan, pixel_wgan).
        bayesian: weights as distributions trained by variational inference (Pyro, mean-field
            Gaussian posterior, Gaussian prior); predictions by sampling the weights.
            Classification gives a per-event mean and spread of the score, regression a
            Gaussian output (mean and width) per event. Float ``mlp`` and ``cnn`` only.
        prior_scale: standard deviation of the Gaussian prior of every weight (bayesian).
        posterior_init_scale: initial standard deviation of the weight posteriors (bayesian).
        samples: weight samples per prediction in the evaluation (bayesian).
        mixture: Gaussian components of a Bayesian regression's output (1: one Gaussian);
            outputs are K weight logits, K means, K widths.
        transforms: autoregressive transforms of a ``flow``; its hidden layers are ``dense``.
    """

    kind: Literal["l0_cnn", "l0_road", "l0_hitfeat", "cnn", "mlp", "autoencoder",
                  "wgan", "pixel_wgan", "flow"] = "l0_cnn"
    eta_pool: int = 4
    channels: tuple[int, ...] = (8, 8)
    kernel: tuple[int, ...] = (3, 3)
    kernels: tuple[tuple[int, ...], ...] = ()
    strides: tuple[tuple[int, ...], ...] = ()
    global_max: bool | None = None
    pool: tuple[int, ...] = (1, 2)
    dense: tuple[int, ...] = (16,)
    dropout: float = 0.0
    batchnorm: bool = False
    padding: Literal["valid", "same"] = "valid"
    latent_dim: int = 16
    bayesian: bool = False
    prior_scale: float = 1.0
    posterior_init_scale: float = 0.01
    samples: int = 50
    mixture: int = 1
    transforms: int = 3

    def validate(self) -> None:
        require_range("architecture.eta_pool", self.eta_pool, 1, 64)
        require_range("architecture.prior_scale", self.prior_scale, 0.0, lo_open=True)
        require_range("architecture.posterior_init_scale", self.posterior_init_scale, 0.0,
                      lo_open=True)
        require_range("architecture.samples", self.samples, 2, 10000)
        require_range("architecture.mixture", self.mixture, 1, 16)
        require_range("architecture.transforms", self.transforms, 1, 32)
        if self.bayesian and self.kind not in ("mlp", "cnn"):
            raise ConfigError(f"architecture.bayesian is for kind mlp or cnn, not {self.kind}")
        require_range("architecture.latent_dim", self.latent_dim, 1, 4096)
        for c in self.channels:
            require_range("architecture.channels", c, 1, 1024)
        for d in self.dense:
            require_range("architecture.dense", d, 1, 4096)
        if len(self.kernel) != 2 or len(self.pool) != 2:
            raise ConfigError(
                "architecture.kernel and architecture.pool need two values (rows, columns)"
            )
        require_range("architecture.dropout", self.dropout, 0.0, 1.0, hi_open=True)
        for key, per_layer, low in (("kernels", self.kernels, 0), ("strides", self.strides, 1)):
            if per_layer and len(per_layer) != len(self.channels):
                raise ConfigError(f"architecture.{key} has {len(per_layer)} entries for "
                                  f"{len(self.channels)} convolutions (architecture.channels)")
            for i, pair in enumerate(per_layer):
                if len(pair) != 2:
                    raise ConfigError(f"architecture.{key}[{i}] needs two values (rows, columns)")
                require_range(f"architecture.{key}[{i}]", min(pair), low, 1024)
        if self.kind == "l0_road" and not self.channels:
            raise ConfigError("architecture.kind l0_road needs at least one convolution "
                              "(architecture.channels)")

    def conv_kernel(self, i: int, rows: int) -> tuple[int, int]:
        """Kernel (rows, columns) of convolution ``i`` over an input of ``rows`` rows."""
        kh, kw = self.kernels[i] if self.kernels else self.kernel
        if self.kind == "l0_road" and not self.kernels and i == 0:
            kh = 0  # a road spans every row
        return (kh or rows), kw

    def conv_stride(self, i: int) -> tuple[int, int]:
        return tuple(self.strides[i]) if self.strides else (1, 1)

    @property
    def uses_global_max(self) -> bool:
        return self.kind == "l0_road" if self.global_max is None else self.global_max


@dataclass(frozen=True)
class QuantSpec:
    """Quantisation. ``float`` trains plain PyTorch; ``ternary`` and ``pow2`` use Brevitas QAT.

    Rules that make the export exact: weights are signed narrow-range integers (``weight_bits``
    2 = ternary {-1, 0, +1}, up to 8 bits = +-127) times one power-of-two ``weight_scale`` per
    tensor; integer input; unsigned ``act_bits``-bit activations with power-of-two scales; no
    biases. ``weight_bits``, ``weight_scale`` and ``act_bits`` take one value for every layer or a
    list, one per weighted layer (convolutions then dense layers, output layer included) or per
    activation (one per hidden layer).
    """

    weights: Literal["float", "ternary", "pow2"] = "float"
    weight_bits: int | tuple[int, ...] = 2
    weight_scale: float | tuple[float, ...] = 0.25
    act_bits: int | tuple[int, ...] = 3

    def validate(self) -> None:
        if not self.is_quantised:
            return
        bits = _as_tuple(self.weight_bits)
        if self.weights == "ternary" and set(bits) != {2}:
            raise ConfigError(f"quant.weights: ternary has 2-bit weights (weight_bits "
                              f"{list(bits)}); use quant.weights: pow2 for multi-bit weights")
        for b in bits:
            require_range("quant.weight_bits", b, 2, 8)
        for scale in _as_tuple(self.weight_scale):
            exponent = math.log2(scale) if scale > 0 else math.nan
            if not math.isfinite(exponent) or exponent != round(exponent):
                raise ConfigError(
                    f"quant.weight_scale = {scale:g} must be a power of two "
                    "(e.g. 0.125, 0.25, 0.5, 1) for an exact fixed-point export"
                )
        for b in _as_tuple(self.act_bits):
            require_range("quant.act_bits", b, 1, 8)

    @property
    def is_quantised(self) -> bool:
        return self.weights != "float"

    def layer_weights(self, i: int) -> tuple[int, float]:
        """(bits, power-of-two scale) of weighted layer ``i``."""
        return _pick(self.weight_bits, i, "quant.weight_bits"), _pick(
            self.weight_scale, i, "quant.weight_scale")

    def layer_act_bits(self, i: int) -> int:
        return _pick(self.act_bits, i, "quant.act_bits")

    def check_layers(self, n_weighted: int, n_acts: int) -> None:
        """Per-layer lists must have one entry per weighted layer / hidden activation."""
        for key, value, n in (("weight_bits", self.weight_bits, n_weighted),
                              ("weight_scale", self.weight_scale, n_weighted),
                              ("act_bits", self.act_bits, n_acts)):
            if isinstance(value, tuple) and len(value) != n:
                raise ConfigError(f"quant.{key} lists {len(value)} values; the network has {n} "
                                  + ("weighted layers" if key != "act_bits" else "activations")
                                  + " (give one value for all, or one per layer)")


def _as_tuple(value: Any) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _pick(value: Any, i: int, key: str) -> Any:
    if not isinstance(value, tuple):
        return value
    if i >= len(value):
        raise ConfigError(f"{key} lists {len(value)} values but the network has more layers "
                          f"(layer {i + 1} has none); give one value for all, or one per layer")
    return value[i]
