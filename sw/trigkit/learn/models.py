"""Network builders: one topology per architecture kind, float (PyTorch) or ternary (Brevitas).

Brevitas is imported inside the quantised builders: it takes seconds to import and float
models do not need it. The quantised variants follow the rules that make the later export exact
(sw/docs/training.md): binary input on its grid (unsigned 2-bit quantiser, scale 1), weights in
{-1, 0, +1} x one power-of-two constant per tensor, unsigned activations with power-of-two
scales, no biases, no batch norm.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trigkit.core.card import ModelCard
from trigkit.core.errors import TrigkitError

from .bayes import BayesianNet
from .flows import ConditionalFlow
from .frontend import FEATURES_PER_ROW, FrontEndNet, RowClusters, row_clusters_bits
from .gan import Generator
from .pixel_gan import PixelSetGenerator, pixel_gan_spec


def _input_quantiser(input_bits: int, input_signed: bool):
    from brevitas.quant.base import IntQuant, PerTensorConstScaling2bit, UintQuant
    from brevitas.quant.solver import ActQuantSolver

    in_bits = max(2, input_bits)

    class BinaryInputQuant(UintQuant, PerTensorConstScaling2bit, ActQuantSolver):
        """Integer input codes (hits: 0 or 1) on the grid of an unsigned quantiser of scale 1.

        At least 2 bits: Brevitas exports a 1-bit quantiser as QONNX BipolarQuant (values
        -1/+1), which is not what a hit image means.
        """

        bit_width = in_bits
        scaling_const = float((1 << in_bits) - 1)
        max_val = float((1 << in_bits) - 1)
        min_val = 0.0

    class SignedInputQuant(IntQuant, PerTensorConstScaling2bit, ActQuantSolver):
        """Signed integer input codes (standardised table features) on a scale-1 grid."""

        bit_width = input_bits
        scaling_const = float((1 << (input_bits - 1)) - 1)
        max_val = float((1 << (input_bits - 1)) - 1)
        min_val = -float(1 << (input_bits - 1))

    return SignedInputQuant if input_signed else BinaryInputQuant


def _weight_quantiser(bits: int, scale: float):
    """Signed narrow-range ``bits``-bit weights times the power-of-two ``scale`` (2 bits:
    ternary). Brevitas divides its constant threshold by the largest code, so the threshold
    is ``scale`` x that code and the exported scale is exactly ``scale``."""
    from brevitas.quant.base import NarrowIntQuant, PerTensorConstScaling2bit
    from brevitas.quant.solver import WeightQuantSolver
    from brevitas.quant.ternary import SignedTernaryWeightPerTensorConst

    if bits == 2:
        class TernaryWeightQuant(SignedTernaryWeightPerTensorConst):
            """Ternary weights with a power-of-two scale (Brevitas' stock 0.1 is not exact)."""

            scaling_const = scale

        return TernaryWeightQuant

    class Pow2WeightQuant(NarrowIntQuant, PerTensorConstScaling2bit, WeightQuantSolver):
        """Multi-bit integer weights with one power-of-two scale per tensor."""

        bit_width = bits
        scaling_const = scale * ((1 << (bits - 1)) - 1)

    return Pow2WeightQuant


def _act_quantiser(act_bits: int):
    from brevitas.quant.fixed_point import Uint8ActPerTensorFixedPoint

    class ActQuant(Uint8ActPerTensorFixedPoint):
        """Unsigned activations, power-of-two scale learned from statistics."""

        bit_width = act_bits

    return ActQuant


class _Layers:
    """Factory of float or quantised layers with one interface; quantised layers take their
    bits and scales from the card, layer by layer, in the order they are made."""

    def __init__(self, card: ModelCard):
        self.card = card
        self.quant = card.quant.is_quantised
        self.n_weighted = 0
        self.n_acts = 0

    def input(self, bits: int | None = None) -> nn.Module:
        if not self.quant:
            return nn.Identity()
        import brevitas.nn as qnn

        q = _input_quantiser(bits or self.card.input_bits, self.card.input_signed)
        return qnn.QuantIdentity(act_quant=q, return_quant_tensor=True)

    def _next_weight_quant(self) -> object:
        bits, scale = self.card.quant.layer_weights(self.n_weighted)
        self.n_weighted += 1
        return _weight_quantiser(bits, scale)

    def _init_weights(self, layer: nn.Module) -> None:
        # Uniform in +-1.5 codes (ternary: about two thirds start non-zero); multi-bit weights
        # start like a float layer, clipped to their range.
        bits, scale = self.card.quant.layer_weights(self.n_weighted - 1)
        if bits == 2:
            nn.init.uniform_(layer.weight, -1.5 * scale, 1.5 * scale)
        else:
            with torch.no_grad():
                top = scale * ((1 << (bits - 1)) - 1)
                layer.weight.clamp_(-top, top)

    def conv(self, c_in: int, c_out: int, kernel: tuple[int, int], padding: str = "valid",
             stride: tuple[int, int] = (1, 1)) -> nn.Module:
        if not self.quant:
            return nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding)
        import brevitas.nn as qnn

        if padding != "valid":
            raise TrigkitError(f"{self.card.name}: quantised convolutions must use valid padding "
                               "(padded convolutions are not supported by the exact export)")
        q = self._next_weight_quant()
        layer = qnn.QuantConv2d(c_in, c_out, kernel, stride=stride, weight_quant=q, bias=False,
                                return_quant_tensor=True)
        self._init_weights(layer)
        return layer

    def linear(self, n_in: int, n_out: int, last: bool = False) -> nn.Module:
        if not self.quant:
            return nn.Linear(n_in, n_out)
        import brevitas.nn as qnn

        q = self._next_weight_quant()
        layer = qnn.QuantLinear(n_in, n_out, weight_quant=q, bias=False,
                                return_quant_tensor=not last)
        self._init_weights(layer)
        return layer

    def relu(self) -> nn.Module:
        if not self.quant:
            return nn.ReLU()
        import brevitas.nn as qnn

        q = _act_quantiser(self.card.quant.layer_act_bits(self.n_acts))
        self.n_acts += 1
        return qnn.QuantReLU(act_quant=q, return_quant_tensor=True)


class ConvAutoencoder(nn.Module):
    """Convolutional autoencoder for (C, H, W) images: conv + max-pool encoder, a dense
    bottleneck, and a mirrored decoder (upsample + conv, leaky ReLU between, linear output).

    Each image is divided by its brightest pixel first (:meth:`target`), so the network works
    on values in [0, 1] whatever the image units (GeV or unit-sum normalised, where pixels of
    1e-4 let the output ReLU die); it reconstructs that scaled image. The anomaly score is the
    mean squared reconstruction error of the scaled image.
    """

    def __init__(self, shape: tuple[int, int, int], channels: tuple[int, ...], latent_dim: int):
        super().__init__()
        c, h, w = shape
        enc: list[nn.Module] = []
        sizes, c_in = [], c
        for c_out in channels:
            enc += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            sizes.append((h, w))
            enc.append(nn.MaxPool2d(2, ceil_mode=True))
            h, w, c_in = -(-h // 2), -(-w // 2), c_out
        self.code_shape = (c_in, h, w)
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c_in * h * w, latent_dim))
        self.expand = nn.Sequential(nn.Linear(latent_dim, c_in * h * w), nn.ReLU())
        dec: list[nn.Module] = []
        outs = [*reversed(channels[:-1]), c]
        for c_out, size in zip(outs, reversed(sizes), strict=True):
            dec += [nn.Upsample(size=size), nn.Conv2d(c_in, c_out, 3, padding=1),
                    nn.LeakyReLU(0.01)]
            c_in = c_out
        self.decoder = nn.Sequential(*dec[:-1])  # linear output: it cannot die on sparse images

    @staticmethod
    def target(x: torch.Tensor) -> torch.Tensor:
        """The image the network reconstructs: ``x`` divided by its brightest pixel."""
        peak = x.flatten(1).amax(1).clamp_min(1e-12)
        return x / peak.view(-1, *([1] * (x.dim() - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.expand(self.encoder(self.target(x))).view(-1, *self.code_shape)
        return self.decoder(z)


def reconstruction_target(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What ``model(x)`` reconstructs (the scaled image for ConvAutoencoder, else ``x``)."""
    return model.target(x) if hasattr(model, "target") else x


def anomaly_score(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-event mean squared reconstruction error (the autoencoder's anomaly score)."""
    return ((model(x) - reconstruction_target(model, x)) ** 2).flatten(1).mean(1)


def image_shape(card: ModelCard) -> tuple[int, int, int]:
    """(C, H, W) of an image input; 2-D inputs have one channel."""
    shape = tuple(card.data.input_shape)
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) != 3:
        raise TrigkitError(f"{card.name}: {card.architecture.kind} needs 2-D or (C, H, W) "
                           f"images, data.input_shape is {list(shape)}")
    return shape


def build_model(card: ModelCard) -> nn.Module:
    """The network described by ``card`` (untrained, weights from the current torch seed)."""
    a = card.architecture
    if a.kind == "autoencoder":
        return ConvAutoencoder(image_shape(card), tuple(a.channels), a.latent_dim)
    if a.kind == "wgan":
        return Generator(a.latent_dim, image_shape(card))
    if a.kind == "pixel_wgan":  # the pixel size only enters the critic's observables
        return PixelSetGenerator(image_shape(card), 1.0, pixel_gan_spec(card))
    if a.kind == "flow":
        shape = tuple(card.data.input_shape)
        if len(shape) != 1 or shape[0] < 2:
            raise TrigkitError(f"{card.name}: a flow needs rows of features and a condition "
                               f"(data.input_shape [F + 1]), not {list(shape)}")
        return ConditionalFlow(shape[0] - 1, a.transforms, tuple(a.dense) or (32, 32))
    if a.bayesian:
        float_card = card.with_overrides(card.name, {"architecture.bayesian": False})
        net = build_model(float_card)
        if card.task == "regression":  # Gaussians: the float card has one output
            net = _gaussian_head(float_card, net, card.n_outputs)
        return BayesianNet(net, card.task, tuple(card.data.input_shape), a.prior_scale,
                           a.posterior_init_scale, a.mixture)
    f = _Layers(card)
    if a.kind == "l0_hitfeat":
        _, rows, width = image_shape(card)
        net = _dense_stack(card, f, [f.input(row_clusters_bits(width))],
                           FEATURES_PER_ROW * rows,
                           scale_input=not f.quant and 1.0 / (1 << row_clusters_bits(width)))
        return FrontEndNet(RowClusters(width), net)
    layers: list[nn.Module] = [f.input()]
    if a.kind in ("l0_cnn", "l0_road", "cnn"):
        if a.kind != "cnn" and len(card.data.input_shape) != 2:
            raise TrigkitError(f"{card.name}: {a.kind} needs 2-D images, data.input_shape is "
                               f"{list(card.data.input_shape)}; use kind cnn for (C, H, W)")
        n = _conv_stack(card, f, layers)
    else:
        layers.append(nn.Flatten())
        n = math.prod(card.data.input_shape)
    return _dense_stack(card, f, layers, n)


def _gaussian_head(card: ModelCard, net: nn.Sequential, n_out: int) -> nn.Sequential:
    """``net`` with an ``n_out``-output last layer (weights, means and widths of Gaussians)."""
    last = net[-1]
    if not isinstance(last, nn.Linear):
        raise TrigkitError(f"{card.name}: a Bayesian regression needs a dense output layer")
    return nn.Sequential(*list(net)[:-1], nn.Linear(last.in_features, n_out))


def _conv_stack(card: ModelCard, f: _Layers, layers: list[nn.Module]) -> int:
    """Append OR-pool, convolutions (+ pools) and the optional global max; the flat width."""
    a = card.architecture
    c_in, h, w = image_shape(card)
    if a.eta_pool > 1:
        layers.append(nn.MaxPool2d((1, a.eta_pool)))  # OR of adjacent binary strips
        w //= a.eta_pool
    for i, c_out in enumerate(a.channels):
        kernel, stride = a.conv_kernel(i, h), a.conv_stride(i)
        layers.append(f.conv(c_in, c_out, kernel, a.padding, stride))
        if a.batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(f.relu())
        if a.padding == "same":
            h, w = -(-h // stride[0]), -(-w // stride[1])
        else:
            h, w = (h - kernel[0]) // stride[0] + 1, (w - kernel[1]) // stride[1] + 1
        if h >= 1 and w >= 1 and tuple(a.pool) != (1, 1):
            layers.append(nn.MaxPool2d(tuple(a.pool)))
            h, w = h // a.pool[0], w // a.pool[1]
        if h < 1 or w < 1:
            raise TrigkitError(
                f"{card.name}: the convolutions shrink the {list(card.data.input_shape)} input "
                "to nothing; use fewer layers, smaller kernels or strides, or less pooling")
        c_in = c_out
    if a.uses_global_max:
        layers.append(nn.MaxPool2d((1, w)))  # "some road fired anywhere in eta"
        w = 1
    layers.append(nn.Flatten())
    return c_in * h * w


def _dense_stack(card: ModelCard, f: _Layers, layers: list[nn.Module], n: int,
                 scale_input: float | bool = False) -> nn.Module:
    """Append the hidden dense layers and the output layer; the whole network."""
    a = card.architecture
    if scale_input:
        layers.append(_Scale(float(scale_input)))
    for width in a.dense:
        layers.append(f.linear(n, width))
        layers.append(f.relu())
        if a.dropout > 0 and not f.quant:
            layers.append(nn.Dropout(a.dropout))
        n = width
    layers.append(f.linear(n, card.n_outputs, last=True))
    if f.quant:
        card.quant.check_layers(f.n_weighted, f.n_acts)
    return nn.Sequential(*[m for m in layers if type(m) is not nn.Identity])


class _Scale(nn.Module):
    """A fixed input scale (float models of integer features: codes to about [0, 1))."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


def firmware_network(model: nn.Module) -> nn.Module:
    """The part of ``model`` that QONNX exports (after any fixed front end)."""
    return model.net if isinstance(model, FrontEndNet) else model


def to_input(images: torch.Tensor | object, card: ModelCard) -> torch.Tensor:
    """Inputs (N, *input_shape) -> float tensor in the network's layout ((N, C, H, W) for
    convolutional networks; 2-D images get one channel)."""
    x = torch.as_tensor(images).float()
    if card.architecture.kind in ("l0_cnn", "l0_road", "cnn", "autoencoder",
                                  "wgan", "pixel_wgan") and x.ndim == 3:
        x = x.unsqueeze(1)
    return x


def weight_tensors(model: nn.Module) -> list[torch.Tensor]:
    """The weight tensors of convolutions and dense layers (what goes into firmware)."""
    return [m.weight for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (weights, biases, batch-norm affine)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def weight_memory_bits(model: nn.Module, card: ModelCard) -> int:
    """Bits to store the network's parameters: weights at their bit width, the rest at 32."""
    weights = weight_tensors(model)
    n_weights = sum(w.numel() for w in weights)
    bits = sum(w.numel() * (card.quant.layer_weights(i)[0] if card.quant.is_quantised else 32)
               for i, w in enumerate(weights))
    return bits + (count_parameters(model) - n_weights) * 32


def runtime_quant_state(model: nn.Module) -> dict[str, dict]:
    """Brevitas' runtime-statistics scale state, which ``state_dict`` leaves out.

    Activation scales are first collected from statistics over a number of training steps;
    the step counter and the running buffer are not in the state dict, and loading one switches
    statistics collection off. Saving them keeps a resumed run identical to an uninterrupted one.
    """
    return {
        name: {"counter": int(mod.counter), "buffer": mod.buffer.detach().clone()}
        for name, mod in model.named_modules()
        if hasattr(mod, "counter") and hasattr(mod, "buffer")
    }


def restore_runtime_quant_state(model: nn.Module, state: dict[str, dict]) -> None:
    """Undo what ``load_state_dict`` assumed about statistics collection (see above)."""
    modules = dict(model.named_modules())
    for name, st in state.items():
        mod = modules[name]
        mod.counter = st["counter"]
        with torch.no_grad():
            mod.buffer.copy_(st["buffer"])
