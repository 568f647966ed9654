"""Benchmark: tracing a 784-64-64-64-10 2-bit MLP (Brevitas' stock fixed-point quantisers, as a
user would write it) and Brevitas' TFC 2w2a example into da4ml logic, checked against the integer
reference before anything is written. Prints the median of 3 trace times per model (target for
the MLP: <= 120 s on 2 vCPUs) and the da4ml LUT estimate.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import brevitas.nn as qnn
import numpy as np
import torch
from brevitas.quant.fixed_point import Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint
from torch import nn

from trigkit.firmware.export import brevitas_to_qonnx
from trigkit.firmware.reference import ReferenceModel
from trigkit.firmware.rtl import trace_reference
from trigkit.firmware.trace import count_code_mismatches

REPEATS = 3
SIZES = (784, 64, 64, 64, 10)


def stock_mlp(bits: int = 2) -> nn.Module:
    """784-64-64-64-10 with 2-bit weights and activations, power-of-two scales."""
    layers: list[nn.Module] = [qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint,
                                                 bit_width=bits, max_val=1.0,
                                                 return_quant_tensor=True)]
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:], strict=True):
        layers.append(qnn.QuantLinear(n_in, n_out, bias=False, weight_bit_width=bits,
                                      weight_quant=Int8WeightPerTensorFixedPoint))
        layers.append(qnn.QuantIdentity(act_quant=Int8ActPerTensorFixedPoint, bit_width=bits,
                                        max_val=4.0, return_quant_tensor=n_out != SIZES[-1]))
    torch.manual_seed(0)
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, qnn.QuantLinear):
            nn.init.uniform_(m.weight, -1.0, 1.0)
    return net.eval()


def tfc() -> nn.Module:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from brevitas_zoo import bnn_pynq_fc

    return bnn_pynq_fc("tfc_2w2a")


def bench(name: str, net: nn.Module, shape: tuple[int, ...]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        onnx = Path(tmp) / "m.onnx"
        brevitas_to_qonnx(net, torch.zeros(1, *shape), onnx)
        ref = ReferenceModel(onnx)
        times, comb = [], None
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            comb, _ = trace_reference(ref, None, None)
            times.append(time.perf_counter() - t0)
        bits, signed = ref.firmware_input_format(None, None)
        lo = -(1 << (bits - 1)) if signed else 0
        codes = np.random.default_rng(0).integers(lo, (1 << (bits - 1 if signed else bits)),
                                                  size=(300, *ref.firmware_input_shape))
        if ref.graph.preprocessing:  # the codes of the input quantiser itself
            codes = np.clip(codes, -1, 1)
        bad, n = count_code_mismatches(comb, ref, codes, bits, signed)
    print(f"{name}: trace median {statistics.median(times):.1f} s of {REPEATS} "
          f"({', '.join(f'{t:.1f}' for t in times)}), da4ml LUT estimate {comb.cost:,.0f}, "
          f"{bad} / {n} mismatches against the reference", flush=True)


if __name__ == "__main__":
    torch.set_num_threads(1)
    bench("784-64-64-64-10 2-bit MLP", stock_mlp(), (784,))
    bench("Brevitas TFC 2w2a", tfc(), (1, 28, 28))
