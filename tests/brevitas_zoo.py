"""Small Brevitas models written the way Brevitas users write them (stock fixed-point
quantisers, power-of-two scales), for the conformance suite of the exact firmware paths.

Each builder returns ``(model, input_shape, input_scale, input_bits, input_signed)``: the torch
input shape of one event (channels first, as Brevitas takes it) and the input quantiser's grid,
so that tests can draw random inputs on the grid.
"""

from __future__ import annotations

import brevitas.nn as qnn
import numpy as np
import torch
from brevitas.quant.fixed_point import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPoint,
)
from torch import nn

#: Signed 4-bit input codes of the models below (Brevitas picks the power-of-two scale).
IN_BITS, IN_MAX = 4, 2.0


def input_quant(bits: int = IN_BITS, max_val: float = IN_MAX) -> nn.Module:
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits,
                             max_val=max_val, return_quant_tensor=True)


def relu(bits: int = 3, max_val: float = 4.0) -> nn.Module:
    return qnn.QuantReLU(act_quant=Uint8ActPerTensorFixedPoint, bit_width=bits, max_val=max_val,
                         return_quant_tensor=True)


def act(bits: int = 4, max_val: float = 8.0) -> nn.Module:
    return qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits,
                             max_val=max_val, return_quant_tensor=True)


def linear(n_in: int, n_out: int, bits: int = 3, **kw) -> nn.Module:
    return qnn.QuantLinear(n_in, n_out, bias=kw.pop("bias", False),
                           weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=bits, **kw)


def conv2d(c_in: int, c_out: int, kernel, bits: int = 3, **kw) -> nn.Module:
    return qnn.QuantConv2d(c_in, c_out, kernel, bias=kw.pop("bias", False),
                           weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=bits,
                           **kw)


def conv1d(c_in: int, c_out: int, kernel: int, bits: int = 3, **kw) -> nn.Module:
    return qnn.QuantConv1d(c_in, c_out, kernel, bias=kw.pop("bias", False),
                           weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=bits,
                           **kw)


class Value(nn.Module):
    """The plain tensor of a QuantTensor (a model returning a QuantTensor exports its scale,
    zero point and bit width as extra graph outputs)."""

    def forward(self, x):
        return x.value if hasattr(x, "value") else x


def finish(model: nn.Module, seed: int = 0) -> nn.Module:
    """A plain tensor output, random weights spread over the quantiser's whole range, eval
    mode."""
    model = nn.Sequential(model, Value())
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, qnn.QuantLinear | qnn.QuantConv2d | qnn.QuantConv1d):
            nn.init.uniform_(m.weight, -1.0, 1.0)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -1.0, 1.0)
    return model.eval()


def grid_codes(shape: tuple[int, ...], n: int, bits: int, signed: bool,
               seed: int = 0) -> np.ndarray:
    """``n`` random ``bits``-bit input codes of one event shape, both extremes included."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    codes = np.random.default_rng(seed).integers(lo, hi + 1, size=(n, *shape))
    codes[0], codes[1] = lo, hi
    return codes


class Residual(nn.Module):
    """x + f(x) with Brevitas' QuantEltwiseAdd, as its users write a skip connection."""

    def __init__(self, n: int):
        super().__init__()
        self.inp = input_quant()
        self.fc = linear(n, n)
        self.act = act(bits=IN_BITS, max_val=IN_MAX)
        self.add = qnn.QuantEltwiseAdd(return_quant_tensor=True)

    def forward(self, x):
        x = self.inp(x)
        return self.add(x, self.act(self.fc(x)))


class Preprocess(nn.Module):
    """``2 x - 1`` before the input quantiser, as Brevitas' bnn_pynq examples do."""

    def forward(self, x):
        return 2.0 * x - 1.0


class TensorNormTail(nn.Module):
    """A float affine after the last layer (like bnn_pynq's TensorNorm): runs after the
    firmware, in software."""

    def forward(self, x):
        x = x.value if hasattr(x, "value") else x
        return (x - 0.25) / 1.00005 * 1.5 + 0.125


class Divide(nn.Module):
    def __init__(self, by: float):
        super().__init__()
        self.by = by

    def forward(self, x):
        return (x.value if hasattr(x, "value") else x) / self.by


class BatchNormed(nn.Module):
    """A quantised layer, a batch norm with trained-looking statistics, an activation
    quantiser: the batch norm becomes Mul + Add in float32, proven exact per code."""

    def __init__(self, layer: nn.Module, bn: nn.Module, head: nn.Module):
        super().__init__()
        self.net = nn.Sequential(input_quant(), layer, bn, act(bits=3, max_val=2.0), head)
        g = torch.Generator().manual_seed(3)
        bn.running_mean.uniform_(-2, 2, generator=g)
        bn.running_var.uniform_(0.5, 4, generator=g)
        bn.weight.data.uniform_(0.5, 2, generator=g)
        bn.bias.data.uniform_(-1, 1, generator=g)

    def forward(self, x):
        return self.net(x)


def supported_models() -> dict:
    """name -> (builder, torch input shape of one event): every supported op and attribute."""
    from brevitas.quant.scaled_int import Int16Bias

    return {
        "mlp_input_scale": (lambda: nn.Sequential(input_quant(), linear(12, 8), relu(),
                                                  linear(8, 3)), (12,)),
        "mlp_int16_bias": (lambda: nn.Sequential(
            input_quant(), linear(12, 8, bias=True, bias_quant=Int16Bias), relu(),
            linear(8, 3, bias=True, bias_quant=Int16Bias), act()), (12,)),
        "conv_pad_stride_bias": (lambda: nn.Sequential(
            input_quant(), conv2d(2, 3, 3, stride=(2, 1), padding=1, bias=True,
                                  bias_quant=Int16Bias), relu(), nn.Flatten(),
            linear(3 * 4 * 7, 2)), (2, 7, 7)),
        "conv_maxpool": (lambda: nn.Sequential(
            input_quant(), conv2d(2, 4, (1, 3)), relu(), nn.MaxPool2d((1, 3), stride=(1, 2)),
            conv2d(4, 2, (3, 1)), relu(), nn.Flatten()), (2, 5, 11)),
        "global_maxpool": (lambda: nn.Sequential(
            input_quant(), conv2d(2, 3, 3), relu(), nn.AdaptiveMaxPool2d(1), nn.Flatten()),
            (2, 6, 7)),
        "conv1d_maxpool1d": (lambda: nn.Sequential(
            input_quant(), conv1d(2, 3, 3, stride=2), relu(), nn.MaxPool1d(2), nn.Flatten(),
            linear(18, 2)), (2, 27)),
        "residual_add": (lambda: Residual(8), (8,)),
        "hardtanh": (lambda: nn.Sequential(
            input_quant(), linear(12, 8),
            qnn.QuantHardTanh(act_quant=Int8ActPerTensorFixedPoint, bit_width=3, max_val=1.0,
                              min_val=-1.0, return_quant_tensor=True), linear(8, 3)), (12,)),
        "reshape_before_quant": (lambda: nn.Sequential(
            nn.Flatten(), input_quant(), linear(12, 3)), (3, 4)),
        "preprocessing": (lambda: nn.Sequential(Preprocess(), input_quant(), linear(12, 3)),
                          (12,)),
        "float_tail": (lambda: nn.Sequential(input_quant(), linear(12, 4), TensorNormTail()),
                       (12,)),
        "po2_division": (lambda: nn.Sequential(input_quant(), linear(12, 4), Divide(4.0),
                                               act(), linear(4, 2)), (12,)),
        "average_pool": (lambda: nn.Sequential(
            input_quant(), conv2d(2, 3, 3), relu(), nn.AvgPool2d((2, 4), stride=(1, 2)), act(),
            nn.Flatten(), linear(18, 2)), (2, 6, 9)),
        "batchnorm_mlp": (lambda: BatchNormed(linear(12, 8), nn.BatchNorm1d(8),
                                              linear(8, 3)), (12,)),
        "batchnorm_conv": (lambda: BatchNormed(conv2d(2, 4, 3), nn.BatchNorm2d(4),
                                               nn.Sequential(nn.Flatten(), linear(80, 3))),
                           (2, 6, 7)),
    }


def refused_models() -> dict:
    """name -> (builder, input shape, regex the refusal must match)."""
    return {
        "maxpool_dilation": (lambda: nn.Sequential(
            input_quant(), conv2d(2, 3, 3), relu(), nn.MaxPool2d(2, dilation=2), nn.Flatten()),
            (2, 8, 8), r"MaxPool.*dilations \[2, 2\]"),
        "float_linear_bias": (lambda: nn.Sequential(input_quant(), linear(12, 8, bias=True),
                                                    relu(), linear(8, 3)), (12,),
                              r"Add.*24 bits.*fix: quantise the constant.*Int16Bias"),
        "float_conv_bias": (lambda: nn.Sequential(input_quant(), conv2d(2, 3, 3, bias=True),
                                                  relu(), nn.Flatten()), (2, 6, 7),
                            r"Conv.*bias.*not fed through a Quant node.*Int16Bias"),
        "average_pool_3x3": (lambda: nn.Sequential(input_quant(), conv2d(2, 3, 3), relu(),
                                                   nn.AvgPool2d(3), act(), nn.Flatten()),
                             (2, 8, 8), r"AveragePool.*window \[3, 3\] of 9 elements"),
        "non_po2_division": (lambda: nn.Sequential(input_quant(), linear(12, 4), Divide(3.0),
                                                   act(), linear(4, 2)), (12,),
                             r"Div.*division by \[3.0\].*power of two"),
    }


def bnn_pynq_fc(config: str, seed: int = 0) -> nn.Module:
    """Brevitas' own bnn_pynq FC example (``tfc_2w2a``, ``sfc_1w1a``, ...): input
    preprocessing 2 x - 1, stock quantisers, batch norms, TensorNorm output; untrained weights
    and batch-norm statistics drawn like trained ones (the pretrained files need a download)."""
    import configparser
    import os

    import brevitas_examples
    from brevitas_examples.bnn_pynq.models.FC import fc

    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(os.path.dirname(brevitas_examples.__file__), "bnn_pynq", "cfg",
                          f"{config}.ini"))
    torch.manual_seed(seed)
    net = fc(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-20, 20, generator=g)
            m.running_var.uniform_(50, 400, generator=g)
            m.weight.data.uniform_(0.5, 2, generator=g)
            m.bias.data.uniform_(-1, 1, generator=g)
    return net.eval()
