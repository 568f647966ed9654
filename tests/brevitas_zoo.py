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
