"""Pure-integer reference inference of a cleaned QONNX graph: the golden model.

Every tensor is an integer array plus one power-of-two exponent (value = int * 2**exp). The
graph is lowered once into a list of integer operations; running it is plain numpy. Large
dot products run as float32/float64 matrix products only when a bound derived from the
quantisers proves every partial sum is an integer below 2**24 (2**53), where those formats are
exact; otherwise int64 is used. The result is the same integers either way.

Public API for physicists: ``trigkit.load("build/l0_pointing_tnn").predict(hits)``.

Longer than the other modules: the lowering, one integer kernel per declared op, the proof of
affine chains (which runs those kernels) and the firmware cut all share the private IntTensor /
_Op representation and the Quant kernel; split, they would import each other's internals.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trigkit.core.errors import TrigkitError
from trigkit.core.io import open_events_h5, reading
from trigkit.core.paths import ONNX_NAME, REPORT_JSON

from .fixedpoint import po2_exponent, quant_range, round_shift
from .frontend import read_front_end
from .intkernels import int8_matmul, requantise
from .layout import graph_layout
from .ops import check_handlers, check_nodes

#: Input bytes per step of the reference: small enough that a step's activations stay in a
#: core's L2 cache (l0_pointing_tnn: 256 events of 3,456 bytes run at about 100k events/s, 384
#: at half that), large enough that small inputs (table rows) are not dominated by Python.
STEP_BYTES = 1 << 20
_EXACT_F32 = 2**24
_EXACT_F64 = 2**53
_EXACT_I32 = 2**31
_INT8_MAX = 127
#: Ops that only move elements (no arithmetic).
_LAYOUT_OPS = ("Transpose", "Reshape", "Flatten")
#: Widest input range an affine chain is proven on by enumeration, and the widest integers.
_MAX_PROOF_BOUND = 1 << 20
_MAX_EXACT_INT = 1 << 62
#: Element-wise arithmetic with a second operand (a constant, or for Add / Sub a tensor).
ELEMENTWISE_OPS = ("Add", "Sub", "Mul", "Div")
#: Metadata key of graphs cut to their firmware part (:func:`firmware_model`).
FIRMWARE_CUT_KEY = "trigkit.firmware_cut"
#: Quantisers: their outputs are on a power-of-two grid.
QUANT_KINDS = ("Quant", "BipolarQuant")


@dataclass
class IntTensor:
    """value = ints * 2**exp; ``bound`` is a proven upper limit of |ints|."""

    ints: np.ndarray
    exp: int
    bound: int


def _exponent(scale: float, where: str) -> int:
    if not (scale > 0 and np.isfinite(scale)):
        raise TrigkitError(f"{where}: scale {scale!r} is not a positive number")
    e = po2_exponent(scale)
    if e is None:
        raise TrigkitError(
            f"{where}: scale {scale:g} is not a power of two; use a fixed-point quantiser "
            "(power-of-two scale) so that the export is exact"
        )
    return e


def exact_dtype(bound: int) -> type:
    """The cheapest dtype holding every integer up to ``bound`` and all sums of them exactly."""
    if bound < _EXACT_F32:
        return np.float32
    if bound < _EXACT_F64:
        return np.float64
    return np.int64


def storage_dtype(bound: int) -> type:
    """Smallest signed integer dtype holding +-``bound`` (activations are stored compactly)."""
    for dt in (np.int8, np.int16, np.int32):
        if bound <= np.iinfo(dt).max:
            return dt
    return np.int64


@dataclass
class _Op:
    kind: str
    name: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)


def _fold_relu_into_quant(ops: list[_Op], graph_output: str) -> list[_Op]:
    """The ops to execute: a Relu whose every consumer is an unsigned Quant is left out.

    An unsigned Quant clips at 0, and round-half-even of a negative value is <= 0, so
    Quant(Relu(x)) == Quant(x) exactly; the Relu pass over memory is saved. ``ops`` itself (what
    the RTL tracer replays) is not changed."""
    consumers: dict[str, list[_Op]] = {}
    for op in ops:
        for name in op.inputs:
            consumers.setdefault(name, []).append(op)
    renamed: dict[str, str] = {}
    plan = []
    for op in ops:
        users = consumers.get(op.output, [])
        if (op.kind == "Relu" and op.output != graph_output and users
                and all(u.kind == "Quant" and not u.attrs.get("signed", 1) for u in users)):
            renamed[op.output] = renamed.get(op.inputs[0], op.inputs[0])
            continue
        plan.append(replace(op, inputs=[renamed.get(i, i) for i in op.inputs]))
    return plan


class IntegerGraph:
    """A cleaned QONNX graph lowered to integer operations."""

    def __init__(self, model_wrapper):
        from qonnx.core.modelwrapper import ModelWrapper

        mw = model_wrapper if isinstance(model_wrapper, ModelWrapper) else ModelWrapper(
            model_wrapper)
        graph = mw.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            raise TrigkitError(graph_io_problem(len(graph.input), len(graph.output)))
        self.input_name = graph.input[0].name
        self.output_name = graph.output[0].name
        self.input_shape = tuple(mw.get_tensor_shape(self.input_name))
        self.output_shape = tuple(mw.get_tensor_shape(self.output_name))
        self.constants: dict[str, IntTensor] = {}
        self.ops: list[_Op] = []
        check_nodes(graph.node)  # every op and attribute is declared in trigkit.firmware.ops
        for node in graph.node:
            self._lower(mw, node)
        self._find_firmware_input(mw)
        self._find_firmware_output(mw)
        self._mark_affine_chains()
        self.plan = _fold_relu_into_quant(self.ops[:self.firmware_end], self.firmware_output)

    def _lower(self, mw, node) -> None:
        """Append the integer op of one QONNX node (quantised constants become constants)."""
        import onnx

        where = f"node {node.name or node.op_type} ({node.op_type})"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        inits = [mw.get_initializer(i) if i else None for i in node.input]
        if node.op_type == "Quant":
            if any(v is None for v in inits[1:4]):
                raise TrigkitError(f"{where}: scale, zero point and bit width must be constants")
            scale, zero, bits = (np.asarray(v) for v in inits[1:4])
            if scale.size != 1:
                raise TrigkitError(f"{where}: per-channel scales are not supported; use one "
                                   "power-of-two scale per tensor")
            if np.any(zero != 0):
                raise TrigkitError(f"{where}: non-zero zero point; use symmetric quantisers")
            if bits.size != 1 or float(bits.ravel()[0]) != int(bits.ravel()[0]):
                raise TrigkitError(f"{where}: bit width must be one integer")
            attrs.update(exp=_exponent(float(scale.ravel()[0]), where),
                         bits=int(bits.ravel()[0]))
            if inits[0] is not None:  # a quantised constant (weights, a bias)
                self.constants[node.output[0]] = self._quantise_constant(inits[0], attrs, where)
                return
            self.ops.append(_Op("Quant", where, [node.input[0]], node.output[0], attrs))
            return
        if node.op_type == "BipolarQuant":
            scale = inits[1]
            if scale is None or np.asarray(scale).size != 1:
                raise TrigkitError(f"{where}: the scale must be one constant power of two")
            attrs.update(exp=_exponent(float(np.asarray(scale).ravel()[0]), where), bits=2,
                         signed=1, narrow=1)  # codes -1 / +1
            if inits[0] is not None:  # 1-bit weights
                signs = np.where(np.asarray(inits[0]) >= 0, 1, -1).astype(np.int64)
                self.constants[node.output[0]] = IntTensor(signs, attrs["exp"], 1)
                return
            self.ops.append(_Op("BipolarQuant", where, [node.input[0]], node.output[0], attrs))
            return
        inputs = [node.input[0]]
        if node.op_type in ("Conv", "MatMul"):
            for extra in node.input[1:]:
                if extra and extra not in self.constants:
                    what = "weights" if extra == node.input[1] else "bias"
                    fix = ("a power-of-two fixed-point weight quantiser" if what == "weights"
                           else "a power-of-two bias quantiser (bias_quant=Int16Bias)")
                    raise TrigkitError(f"{where}: its {what} {extra!r} are not fed through a "
                                       f"Quant node (float {what} left in the graph); fix: "
                                       f"quantise them with {fix}")
            inputs += [i for i in node.input[1:] if i]
        elif node.op_type in ELEMENTWISE_OPS:
            if inits[1] is not None:
                self.constants[node.input[1]] = exact_constant(inits[1], where)
            inputs.append(node.input[1])
        elif node.op_type == "Reshape":
            if inits[1] is None:
                raise TrigkitError(f"{where}: the target shape must be a constant")
            attrs["shape"] = [int(v) for v in inits[1]]
        self.ops.append(_Op(node.op_type, where, inputs, node.output[0], attrs))

    def _find_firmware_input(self, mw) -> None:
        """Where the firmware starts: the graph input, or, when float arithmetic (input
        preprocessing: Mul / Add / Sub / Div by constants) comes before the input quantiser,
        that quantiser's output (the preprocessing and the input quantisation then run before
        the firmware, see :meth:`run`)."""
        name, arithmetic = self.input_name, False
        for n, op in enumerate(self.ops):
            if op.inputs[0] != name:
                continue
            if op.kind == "BipolarQuant" and not arithmetic and not is_firmware_cut(mw):
                raise TrigkitError(
                    f"{op.name}: a BipolarQuant on the raw graph input maps x >= 0 to +1 and "
                    "x < 0 to -1, and Brevitas exports every 1-bit quantiser, also an unsigned "
                    "{0, 1} one, as BipolarQuant: 0/1 data (hit images) would become all +1; "
                    "fix: quantise 0/1 inputs with an unsigned 2-bit quantiser of scale 1 (as "
                    "trigkit.learn.models does), or map them to -1/+1 first (2 x - 1)")
            if op.kind in QUANT_KINDS:
                self.input_exp = int(op.attrs["exp"])
                self.input_quant = op
                self.firmware_input = op.output if arithmetic else self.input_name
                self.firmware_start = n + 1 if arithmetic else 0
                self.firmware_input_shape = tuple(mw.get_tensor_shape(self.firmware_input))
                return
            if op.kind in ELEMENTWISE_OPS and all(i in self.constants for i in op.inputs[1:]):
                arithmetic = True
            elif op.kind not in _LAYOUT_OPS:
                break
            name = op.output
        raise TrigkitError(f"the graph input {self.input_name!r} does not reach a Quant node "
                           "through layout ops and constant arithmetic only; fix: start the "
                           "model with an input quantiser (QuantIdentity) so that the input has "
                           "a fixed-point grid")

    def _find_firmware_output(self, mw) -> None:
        """Where the firmware ends: the graph output, or, when the graph ends in float
        arithmetic with constants after its last integer tensor (e.g. Brevitas' TensorNorm),
        that tensor: the float tail then runs after the firmware (:meth:`apply_tail`)."""
        end, name = len(self.ops), self.output_name
        while end > 0:
            op = self.ops[end - 1]
            if op.output != name or op.kind not in ELEMENTWISE_OPS or not all(
                    i in self.constants for i in op.inputs[1:]):
                break
            end, name = end - 1, op.inputs[0]
        if end < self.firmware_start:
            raise TrigkitError("the graph has no integer part between its input quantiser and "
                               "its output")
        self.firmware_end = end
        self.firmware_output = name
        self.firmware_output_shape = tuple(mw.get_tensor_shape(name))
        self.tail = self.ops[end:]

    def _mark_affine_chains(self) -> None:
        """Constant arithmetic feeding only a Quant (e.g. a batch norm as Mul + Add) may
        round in QONNX's float32 and still give exact quantised codes: such a chain is
        computed exactly and proven, for every input its proven range allows, to give the
        same codes as QONNX (:func:`prove_affine_chain`); elsewhere every result must fit
        float32's 24 bits."""
        consumers: dict[str, list[_Op]] = {}
        producers = {op.output: op for op in self.firmware_ops}
        for op in self.firmware_ops:
            for name in op.inputs:
                consumers.setdefault(name, []).append(op)
        for op in self.firmware_ops:
            before = producers.get(op.inputs[0])
            if not _is_const_arith(op, self.constants) or (
                    before is not None and _is_const_arith(before, self.constants)
                    and len(consumers[before.output]) == 1):
                continue  # not arithmetic, or inside a chain that starts earlier
            chain, cur = [op], op
            while True:
                users = consumers.get(cur.output, [])
                if len(users) != 1:
                    break
                if users[0].kind in QUANT_KINDS:
                    for member in chain:
                        member.attrs["chain"] = chain
                    op.attrs["chain_quant"] = users[0]
                    op.attrs["constants"] = self.constants
                    break
                if not _is_const_arith(users[0], self.constants):
                    break
                chain.append(users[0])
                cur = users[0]

    def apply_tail(self, out: IntTensor) -> np.ndarray:
        """The graph's float tail on the firmware's output, in float32 exactly as onnxruntime
        computes it (the firmware output itself when there is no tail)."""
        if not self.tail:
            return out.ints.astype(np.float64) * 2.0**out.exp
        _float32_exact(self.tail[0], out.bound)  # the integers themselves are exact floats
        env: dict[str, Any] = {self.firmware_output: (out.ints.astype(np.float64)
                                                      * 2.0**out.exp).astype(np.float32)}
        for op in self.tail:
            env[op.output] = _float_arith(op, env[op.inputs[0]], self.constants[op.inputs[1]])
        return env[self.output_name].astype(np.float64)

    @property
    def firmware_ops(self) -> list[_Op]:
        """The integer ops the firmware computes (without preprocessing and float tail)."""
        return self.ops[self.firmware_start:self.firmware_end]

    @property
    def preprocessing(self) -> bool:
        """True when float arithmetic precedes the input quantiser: the firmware's input is then
        the input quantiser's output (its codes), computed in software by :meth:`run`."""
        return self.firmware_input != self.input_name

    @staticmethod
    def _quantise_constant(w: np.ndarray, attrs: dict, where: str) -> IntTensor:
        lo, hi = quant_range(attrs["bits"], bool(attrs.get("signed", 1)),
                              bool(attrs.get("narrow", 0)))
        q = np.clip(np.round(w.astype(np.float64) / 2.0 ** attrs["exp"]), lo, hi).astype(np.int64)
        return IntTensor(q, attrs["exp"], int(max(abs(lo), abs(hi))))

    # -- execution --------------------------------------------------------------------------
    def run(self, x: np.ndarray) -> IntTensor:
        """The firmware's output (before any float tail) on a batch in the graph's input
        layout (float values on the input grid, or any floats when the graph quantises them
        after preprocessing)."""
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape[1:]:
            raise TrigkitError(f"input has shape {list(x.shape[1:])} per event; the graph "
                               f"expects {list(self.input_shape[1:])}")
        return self._run_from({self.input_name: x}, 0)

    def input_codes(self, x: np.ndarray) -> np.ndarray:
        """The input quantiser's integer codes of graph inputs ``x`` (after any preprocessing
        or reshaping before it; the codes the firmware takes when there is preprocessing)."""
        if self.input_quant is self.ops[0]:
            return np.asarray(x) * 2.0**-self.input_exp if self.input_exp else np.asarray(x)
        env: dict[str, IntTensor | np.ndarray] = {self.input_name: np.asarray(x)}
        for op in self.plan[:self._quant_step() + 1]:
            args = [env[i] if i in env else self.constants[i] for i in op.inputs]
            env[op.output] = _KERNELS[op.kind](op, *args)
        return env[self.input_quant.output].ints

    def run_codes(self, codes: np.ndarray) -> IntTensor:
        """Evaluate from the firmware's input codes (value = code * 2**input_exp)."""
        codes = np.asarray(codes)
        if not self.preprocessing:
            x = codes if self.input_exp == 0 else codes.astype(np.float64) * 2.0**self.input_exp
            return self.run(x)
        if codes.shape[1:] != self.firmware_input_shape[1:]:
            raise TrigkitError(f"input codes have shape {list(codes.shape[1:])} per event; the "
                               f"firmware takes {list(self.firmware_input_shape[1:])}")
        q = self.input_quant.attrs
        lo, hi = quant_range(q["bits"], bool(q.get("signed", 1)), bool(q.get("narrow", 0)))
        if codes.size and (codes.min() < lo or codes.max() > hi):
            raise TrigkitError(f"input codes in [{codes.min()}, {codes.max()}] lie outside the "
                               f"input quantiser's range [{lo}, {hi}]")
        start = IntTensor(codes.astype(storage_dtype(max(-lo, hi))), self.input_exp,
                          max(-lo, hi))
        return self._run_from({self.firmware_input: start}, self._plan_start())

    def _plan_start(self) -> int:
        return self._quant_step() + 1 if self.preprocessing else 0

    def _quant_step(self) -> int:
        """Index of the input quantiser in the plan."""
        return next(n for n, op in enumerate(self.plan) if op.output == self.input_quant.output)

    def _run_from(self, env: dict, start: int) -> IntTensor:
        for op in self.plan[start:]:
            args = [env[i] if i in env else self.constants[i] for i in op.inputs]
            env[op.output] = _KERNELS[op.kind](op, *args)
        out = env[self.firmware_output]
        if not isinstance(out, IntTensor):
            raise TrigkitError("the graph output is not quantised (no Quant node on the input?)")
        return out

    @staticmethod
    def _op_quant(op: _Op, t) -> IntTensor:
        a = op.attrs
        lo, hi = quant_range(a["bits"], bool(a.get("signed", 1)), bool(a.get("narrow", 0)))
        bound = int(max(abs(lo), abs(hi)))
        if isinstance(t, IntTensor):
            shift = a["exp"] - t.exp
            x = t.ints
            if shift > 0 and x.dtype.kind in "iu":
                return IntTensor(requantise(x, shift, lo, hi, storage_dtype(bound)), a["exp"],
                                 bound)
            if shift > 0 and x.dtype.kind == "f":
                # exact: integers below 2**24 (2**53) in float32 (float64), power-of-two
                # scaling, np.rint rounds half to even; one new array, then in place
                q = x * x.dtype.type(2.0 ** -shift)
                np.rint(q, out=q)
                np.clip(q, lo, hi, out=q)
                return IntTensor(q.astype(storage_dtype(bound)), a["exp"], bound)
            # shift <= 0: a finer grid, so the values are multiplied by 2**-shift exactly
            q = x * x.dtype.type(2.0 ** -shift) if x.dtype.kind == "f" else round_shift(x, shift)
        else:  # the float graph input: must lie on the grid to be exact
            x = np.asarray(t)
            if (x.dtype == np.uint8 and a["exp"] == 0 and lo <= 0 and hi <= _INT8_MAX
                    and (x.size == 0 or int(x.max()) <= hi)):
                # unsigned byte codes already inside the range (hit images): the clip does
                # nothing and the same bytes read as int8 are the same values; no copy
                return IntTensor(x.view(np.int8), a["exp"], bound)
            q = x if x.dtype.kind in "iu" and a["exp"] == 0 else np.round(
                x.astype(np.float64) * 2.0 ** -a["exp"])
        q = np.clip(q, lo, hi)
        return IntTensor(q.astype(storage_dtype(bound), copy=False), a["exp"], bound)

    @staticmethod
    def _op_transpose(op: _Op, t: IntTensor) -> IntTensor:
        if not isinstance(t, IntTensor):
            return np.transpose(t, op.attrs["perm"])
        return IntTensor(np.transpose(t.ints, op.attrs["perm"]), t.exp, t.bound)

    @staticmethod
    def _op_relu(op: _Op, t: IntTensor) -> IntTensor:
        return IntTensor(np.maximum(t.ints, 0), t.exp, t.bound)

    @staticmethod
    def _op_flatten(op: _Op, t: IntTensor | np.ndarray) -> IntTensor | np.ndarray:
        x = t.ints if isinstance(t, IntTensor) else t  # a float input before its quantiser
        axis = op.attrs.get("axis", 1)
        y = x.reshape(int(np.prod(x.shape[:axis])), -1)
        return IntTensor(y, t.exp, t.bound) if isinstance(t, IntTensor) else y

    @staticmethod
    def _op_reshape(op: _Op, t: IntTensor | np.ndarray) -> IntTensor | np.ndarray:
        x = t.ints if isinstance(t, IntTensor) else t  # a float input before its quantiser
        shape = list(op.attrs["shape"])
        if shape and shape[0] in (1, -1, 0):
            shape[0] = x.shape[0]  # the batch dimension follows the input
        y = x.reshape(shape)
        return IntTensor(y, t.exp, t.bound) if isinstance(t, IntTensor) else y

    @staticmethod
    def _op_maxpool(op: _Op, t: IntTensor) -> IntTensor:
        kh, kw = op.attrs["kernel_shape"]
        sh, sw = op.attrs.get("strides", [kh, kw])
        x = t.ints
        _, h, w, _ = x.shape
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
        y = None
        for i in range(kh):
            for j in range(kw):
                part = x[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                y = part.copy() if y is None else np.maximum(y, part, out=y)
        return IntTensor(y, t.exp, t.bound)

    @staticmethod
    def _op_conv(op: _Op, t: IntTensor, w: IntTensor, b: IntTensor | None = None) -> IntTensor:
        acc = IntegerGraph._conv_acc(op, t, w)
        return acc if b is None else _op_add(op, acc, b)  # a bias: added on the finer grid

    @staticmethod
    def _conv_acc(op: _Op, t: IntTensor, w: IntTensor) -> IntTensor:
        """Convolution as integer adds of shifted input planes, one per non-zero weight
        (ternary weights add or subtract; other integers multiply), accumulated in the
        narrowest integer type that holds the proven bound: exact, and without the im2col
        copies a matrix product would need (the weights are tiny and mostly ternary)."""
        # NHWC input; channels-last weights (Cout, kh, kw, Cin)
        kh, kw = op.attrs["kernel_shape"]
        sh, sw = op.attrs.get("strides", [1, 1])
        pads = op.attrs.get("pads", [0, 0, 0, 0])
        x = t.ints
        if any(pads):
            x = np.pad(x, ((0, 0), (pads[0], pads[2]), (pads[1], pads[3]), (0, 0)))
        n, h, wd, c = x.shape
        cout = w.ints.shape[0]
        ho, wo = (h - kh) // sh + 1, (wd - kw) // sw + 1
        bound = max(t.bound * int(np.abs(w.ints).reshape(cout, -1).sum(axis=1).max(initial=0)),
                    1)
        acc = np.dtype(storage_dtype(bound) if bound > 127 else np.int16)
        planes = np.moveaxis(x, 3, 0).astype(acc)  # (Cin, N, H, W), one contiguous copy
        out = np.zeros((cout, n, ho, wo), acc)
        for i in range(kh):
            for j in range(kw):
                for ci in range(c):
                    column = w.ints[:, i, j, ci]
                    users = np.flatnonzero(column)
                    if not users.size:
                        continue
                    part = planes[ci, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                    if users.size > 1:
                        part = np.ascontiguousarray(part)  # read once per output channel
                    for co in users:
                        v = int(column[co])
                        if v == 1:
                            out[co] += part
                        elif v == -1:
                            out[co] -= part
                        else:
                            out[co] += part * acc.type(v)
        return IntTensor(np.moveaxis(out, 0, 3), t.exp + w.exp, bound)

    @staticmethod
    def _op_matmul(op: _Op, t: IntTensor, w: IntTensor) -> IntTensor:
        bound = max(t.bound * int(np.abs(w.ints).sum(axis=0).max(initial=0)), 1)
        x = t.ints.reshape(t.ints.shape[0], -1)
        if x.dtype == np.int8 and w.bound <= _INT8_MAX and bound < _EXACT_I32:
            return IntTensor(int8_matmul(x, w.ints), t.exp + w.exp, bound)
        dtype = exact_dtype(bound)
        return IntTensor(x.astype(dtype, copy=False) @ w.ints.astype(dtype), t.exp + w.exp,
                         bound)


def firmware_model(model_wrapper):
    """A copy of the graph cut to what the firmware computes: from the input quantiser's input
    (where preprocessing or reshaping precedes it) to the last integer tensor (where a float
    tail follows); the graph itself when it has neither. Used by the hls4ml path, whose C
    simulation then takes :meth:`ReferenceModel.hls_input` and gives the firmware's
    integers."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    graph = IntegerGraph(model_wrapper)
    if graph.input_quant is graph.ops[0] and not graph.tail:
        return model_wrapper
    mw = ModelWrapper(copy.deepcopy(model_wrapper.model))
    start, end = graph.input_quant.inputs[0], graph.firmware_output
    keep_from = graph.ops.index(graph.input_quant)
    keep = {op.output for op in graph.ops[keep_from:graph.firmware_end]}
    for node in list(mw.graph.node):
        if node.output[0] not in keep and not (node.op_type in QUANT_KINDS
                                               and mw.get_initializer(node.input[0]) is not None):
            mw.graph.node.remove(node)
    mw.model.metadata_props.add(key=FIRMWARE_CUT_KEY, value="1")
    for port, name in ((mw.graph.input[0], start), (mw.graph.output[0], end)):
        port.CopyFrom(_value_info(name, mw.get_tensor_shape(name)))
        for vi in [vi for vi in mw.graph.value_info if vi.name == name]:
            mw.graph.value_info.remove(vi)
    return cleanup_model(mw)


def is_firmware_cut(mw) -> bool:
    """True for a graph made by :func:`firmware_model` (its input is the input quantiser's)."""
    return any(p.key == FIRMWARE_CUT_KEY for p in mw.model.metadata_props)


def _value_info(name: str, shape: list[int]):
    """A float tensor value info (ONNX) of ``name`` and ``shape``."""
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _op_avgpool(op: _Op, t: IntTensor) -> IntTensor:
    """AveragePool (NCHW) over a window of 2**k elements: the window sum, exponent - k."""
    kh, kw = op.attrs["kernel_shape"]
    sh, sw = op.attrs.get("strides", [1, 1])
    x = t.ints.astype(np.int64)
    _, _, h, w = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    total = np.zeros(x.shape[:2] + (ho, wo), np.int64)
    for i in range(kh):
        for j in range(kw):
            total += x[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
    bound = t.bound * kh * kw
    _float32_exact(op, bound)
    k = (kh * kw).bit_length() - 1
    return IntTensor(total.astype(storage_dtype(bound)), t.exp - k, bound)


def _op_bipolar(op: _Op, t) -> IntTensor:
    """BipolarQuant: +1 where x >= 0, else -1, times the power-of-two scale."""
    x = t.ints if isinstance(t, IntTensor) else np.asarray(t)
    return IntTensor(np.where(x >= 0, 1, -1).astype(np.int8), int(op.attrs["exp"]), 1)


def graph_io_problem(n_inputs: int, n_outputs: int) -> str:
    """Why a graph with other than one input and one output is refused, and the fix."""
    why = (f"the graph has {n_inputs} inputs and {n_outputs} outputs; the exact paths take one "
           "input and one output")
    if n_outputs > 1:
        why += ("; fix: a Brevitas model that returns a QuantTensor exports its scale, zero "
                "point and bit width as extra outputs: return a plain tensor (set "
                "return_quant_tensor=False on the last layer, or return .value)")
    return why


def exact_constant(value: np.ndarray, where: str) -> IntTensor:
    """A float constant as integers times one power of two, exactly (every float is a ratio
    with a power-of-two denominator); the coarsest such grid."""
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise TrigkitError(f"{where}: its constant has non-finite values")
    ratios = [float(x).as_integer_ratio() for x in v.ravel()]
    exp = -max((q.bit_length() - 1 for _, q in ratios), default=0)
    ints = [p << (-exp - (q.bit_length() - 1)) for p, q in ratios]
    while ints and any(ints) and all(n % 2 == 0 for n in ints):
        ints = [n // 2 for n in ints]
        exp += 1
    bound = max((abs(n) for n in ints), default=0)
    if bound >= 1 << 62:
        raise TrigkitError(f"{where}: its constant spans {bound.bit_length()} binary orders; "
                           "no fixed-point grid holds it")
    return IntTensor(np.array(ints, dtype=np.int64).reshape(v.shape), exp, bound)


def _is_const_arith(op: _Op, constants: dict) -> bool:
    return op.kind in ELEMENTWISE_OPS and all(i in constants for i in op.inputs[1:])


def prove_affine_chain(chain: list, constants: dict, quant: _Op, exp: int,
                       bound: int) -> str | None:
    """Why exact arithmetic + the Quant differs from QONNX's float32 chain + the Quant for
    some integer input ``x * 2**exp`` with ``|x| <= bound`` (None: they agree on every one).

    ``chain`` are the kinds and constant operands ``[(kind, IntTensor), ...]``. Both sides are
    evaluated on all 2 * bound + 1 inputs at once, per channel by broadcasting."""
    if bound > _MAX_PROOF_BOUND:
        return (f"its inputs span +-{bound}, too many to prove the chain exact (at most "
                f"+-{_MAX_PROOF_BOUND})")
    x, a = affine_chain_codes(chain, quant, exp, bound)
    floats = (x.astype(np.float64) * 2.0**exp).astype(np.float32)
    for kind, c in chain:
        floats = _float_arith(_Op(kind, "proof", [], "", {}), floats, c)
    b = _KERNELS[quant.kind](quant, floats).ints
    a, b = np.broadcast_arrays(a, b.astype(np.int64))
    bad = np.argwhere(a != b)
    if bad.size == 0:
        return None
    where = tuple(int(i) for i in bad[0])
    return (f"QONNX's float32 rounding changes the quantised code at input "
            f"{int(x.ravel()[where[0]]) * 2.0**exp:g} (index {where[1:]}): {b[where]} instead "
            f"of the exact {a[where]}")


def affine_chain_codes(chain: list, quant: _Op, exp: int, bound: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``x`` (-bound .. bound, shaped to broadcast over the chain's constants) and the
    quantised codes the exact chain + Quant gives for ``x * 2**exp``."""
    x = np.arange(-bound, bound + 1, dtype=np.int64)
    ndim = max([c.ints.ndim for _, c in chain] + [2])
    x = x.reshape((-1,) + (1,) * (ndim - 1))
    exact = IntTensor(x, exp, bound)
    for kind, c in chain:
        op = _Op(kind, "proof", [], "", {})
        exact = _op_add(op, exact, c, exact=True) if kind in ("Add", "Sub") else _op_mul(
            op, exact, c, exact=True)
    return x, _KERNELS[quant.kind](quant, exact).ints.astype(np.int64)


def _check_chain(op: _Op, t: IntTensor, constants: dict) -> None:
    """Prove once per input range that an affine chain's quantised codes are QONNX's."""
    key = (t.exp, t.bound)
    proven = op.attrs.setdefault("proven", set())
    if key in proven:
        return
    quant = op.attrs["chain_quant"]
    chain = [(m.kind, constants[m.inputs[1]]) for m in op.attrs["chain"]]
    why = prove_affine_chain(chain, constants, quant, t.exp, t.bound)
    if why is not None:
        raise TrigkitError(f"{op.name}: {why}; fix: quantise the affine constants (a batch "
                           "norm's scale and shift) onto power-of-two grids")
    proven.add(key)


def _float32_exact(op: _Op, bound: int) -> None:
    """qonnx evaluates Add / Sub / Mul in float32: exact while every result fits 24 bits."""
    if bound >= _EXACT_F32:
        raise TrigkitError(
            f"{op.name}: its results need up to {int(bound).bit_length()} significant bits; "
            "QONNX computes this op in float32 (24 bits) and may round, so no fixed-point "
            "circuit can match it; fix: quantise the constant (e.g. a bias with "
            "bias_quant=Int16Bias) or the operands onto coarser power-of-two grids")


def _float_arith(op: _Op, a: np.ndarray, b: IntTensor) -> np.ndarray:
    """Preprocessing before the input quantiser: onnxruntime's float32 arithmetic (one
    correctly rounded IEEE operation per element, so numpy float32 gives the same bits)."""
    c = (b.ints.astype(np.float64) * 2.0**b.exp).astype(np.float32)
    x = np.asarray(a).astype(np.float32, copy=False)
    return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply,
            "Div": np.divide}[op.kind](x, c)


def _op_add(op: _Op, a, b: IntTensor, exact: bool = False) -> IntTensor | np.ndarray:
    """Add / Sub of two tensors or a tensor and a constant, on their common (finer) grid
    (``exact``: inside a proven affine chain, float32 exactness not required)."""
    if not isinstance(a, IntTensor):
        return _float_arith(op, a, b)
    e = min(a.exp, b.exp)
    x = a.ints.astype(np.int64) << (a.exp - e)
    y = b.ints.astype(np.int64) << (b.exp - e)
    bound = (a.bound << (a.exp - e)) + (b.bound << (b.exp - e))
    _check_exact(op, a, bound, exact)
    ints = x - y if op.kind == "Sub" else x + y
    return IntTensor(ints.astype(storage_dtype(bound)), e, bound)


def _op_mul(op: _Op, a, b: IntTensor, exact: bool = False) -> IntTensor | np.ndarray:
    """Mul by a constant (Div: by the constant's inverse, which must be exact)."""
    if not isinstance(a, IntTensor):
        return _float_arith(op, a, b)
    if op.kind == "Div":
        b = inverse_constant(b, op.name)
    bound = a.bound * int(np.abs(b.ints).max(initial=0))
    _check_exact(op, a, bound, exact)
    ints = a.ints.astype(np.int64) * b.ints
    return IntTensor(ints.astype(storage_dtype(max(bound, 1))), a.exp + b.exp, bound)


def _check_exact(op: _Op, a: IntTensor, bound: int, exact: bool) -> None:
    if bound >= _MAX_EXACT_INT:
        raise TrigkitError(f"{op.name}: its results need {int(bound).bit_length()} bits, more "
                           "than the reference's 62-bit integers")
    if exact:
        return
    if "chain" not in op.attrs:
        _float32_exact(op, bound)
    elif "chain_quant" in op.attrs:  # the chain's first op: prove the whole chain once
        _check_chain(op, a, op.attrs["constants"])


def inverse_constant(b: IntTensor, where: str) -> IntTensor:
    """1 / b exactly: every element must be plus or minus a power of two."""
    if np.any(b.ints == 0) or np.any(np.abs(b.ints) & (np.abs(b.ints) - 1)):
        vals = sorted({float(v) for v in (b.ints * 2.0**b.exp).ravel()})[:4]
        raise TrigkitError(f"{where}: division by {vals}: only powers of two divide exactly "
                           "on a fixed-point grid; fix: divide by a power of two (or fold the "
                           "division into the next quantiser's scale)")
    inv = np.sign(b.ints) * 2.0 ** -(np.log2(np.abs(b.ints)) + b.exp)
    return exact_constant(inv, where)


_KERNELS = {
    "Quant": IntegerGraph._op_quant, "Transpose": IntegerGraph._op_transpose,
    "Relu": IntegerGraph._op_relu, "Flatten": IntegerGraph._op_flatten,
    "Reshape": IntegerGraph._op_reshape, "MaxPool": IntegerGraph._op_maxpool,
    "Conv": IntegerGraph._op_conv, "MatMul": IntegerGraph._op_matmul,
    "Add": _op_add, "Sub": _op_add, "Mul": _op_mul, "Div": _op_mul,
    "BipolarQuant": _op_bipolar, "AveragePool": _op_avgpool,
}
check_handlers("the integer reference", _KERNELS)


def keep_freed_memory() -> None:
    """Let glibc keep the memory a step frees for the next step (process-wide, once).

    Each step of the reference allocates and frees the same few MB of activations; glibc's
    defaults hand such blocks back to the system and fault them in again, which took half the
    run time on l0_pointing_tnn (57k against 100k events/s on one core). Raising the mmap and
    trim thresholds keeps them; other platforms are left as they are."""
    global _MALLOC_TUNED
    if _MALLOC_TUNED:
        return
    _MALLOC_TUNED = True
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)


_MALLOC_TUNED = False
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


class ReferenceModel:
    """An exported model: ``predict`` runs the integer reference on hit images.

    Images are given as the simulator stores them (N, 9, 384) — numpy arrays or an HDF5 file
    path with a ``hits`` dataset — and are fed in the graph's own layout.
    """

    def __init__(self, onnx_path: str | Path, task: str = "", classes: list[str] | None = None):
        self.path = Path(onnx_path)
        if not self.path.is_file():
            raise TrigkitError(f"{self.path} not found; export the model first "
                               "(trigkit export --model NAME)")
        try:
            import onnx

            model = onnx.load(str(self.path))
        except Exception as err:  # noqa: BLE001 - any parse failure is the same user error
            raise TrigkitError(f"{self.path} is not a readable ONNX file ({err})") from None
        from qonnx.core.modelwrapper import ModelWrapper

        self.graph = IntegerGraph(ModelWrapper(model))
        self.front_end = read_front_end(model)
        if self.front_end is not None:
            want = (1, self.front_end.n_features)
            if tuple(self.graph.input_shape) != want:
                raise TrigkitError(f"{self.path}: the graph input {list(self.graph.input_shape)} "
                                   f"does not take the front end's {want[1]} features")
            if self.graph.input_exp != 0:
                raise TrigkitError(f"{self.path}: the front end gives integer feature codes, but "
                                   f"the graph's input quantiser has scale "
                                   f"2**{self.graph.input_exp}; export it with scale 1")
        keep_freed_memory()
        self.task = task
        self.classes = classes or []

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input event (the images before any front end)."""
        if self.front_end is not None:
            return self.front_end.input_shape
        return self.graph.input_shape[1:]

    def weights_nonzero(self) -> dict:
        """Non-zero integer weights per weighted layer (graph order) and in all: what the
        firmware's adders are made of."""
        per_layer = [[int(np.count_nonzero(t.ints)), int(t.ints.size)]
                     for t in self.graph.constants.values()]
        return {"per_layer": per_layer, "nonzero": sum(n for n, _ in per_layer),
                "total": sum(t for _, t in per_layer)}

    @property
    def input_exp(self) -> int:
        """Exponent of the firmware's input codes: value = code * 2**input_exp (vectors.npz's
        ``x`` and the RTL's ``in_data`` hold codes; 0 for hit images and front ends)."""
        return self.graph.input_exp

    def predict_codes(self, codes: np.ndarray, batch: int | None = None
                      ) -> tuple[np.ndarray, int]:
        """:meth:`predict_int` on firmware input codes (values ``codes * 2**input_exp``)."""
        codes = np.asarray(codes)
        if self.graph.preprocessing:
            outs = [self.graph.run_codes(self.firmware_layout(codes[s:s + 4096]))
                    for s in range(0, len(codes), 4096)]
            exp = outs[0].exp if outs else 0
            return np.concatenate([o.ints.reshape(len(o.ints), -1).astype(np.int64)
                                   for o in outs]), exp
        if self.input_exp == 0:
            return self.predict_int(codes, batch)
        return self.predict_int(codes.astype(np.float64) * 2.0**self.input_exp, batch)

    def hls_input(self, images: np.ndarray) -> np.ndarray:
        """What the hls4ml C simulation (of :func:`firmware_model`) takes for ``images``: the
        graph input, or the input quantiser's values where anything precedes it."""
        x = self.to_graph_layout(images)
        if self.graph.input_quant is self.graph.ops[0]:
            return x
        return self.graph.input_codes(x).astype(np.float64) * 2.0**self.input_exp

    def firmware_layout(self, codes: np.ndarray) -> np.ndarray:
        """Input codes as stored (vectors.npz's ``x``) -> the firmware's input layout."""
        codes = np.asarray(codes)
        if self.graph.preprocessing:
            return codes.reshape((len(codes), *self.graph.firmware_input_shape[1:]))
        return self.to_graph_layout(codes)

    def firmware_input_format(self, input_bits: int | None, input_signed: bool | None
                              ) -> tuple[int, bool]:
        """(bits, signed) of one firmware input code; None takes the input quantiser's."""
        q = self.graph.input_quant.attrs
        if self.front_end is not None:
            return self.front_end.feature_bits, False
        if self.graph.preprocessing:
            return int(q["bits"]), bool(q.get("signed", 1))
        return (int(q["bits"]) if input_bits is None else int(input_bits),
                bool(q.get("signed", 1)) if input_signed is None else bool(input_signed))

    @property
    def firmware_input_shape(self) -> tuple[int, ...]:
        """Shape of one event as the firmware takes it (images before a front end, the input
        quantiser's codes after preprocessing)."""
        if self.graph.preprocessing:
            return tuple(self.graph.firmware_input_shape[1:])
        return self.input_shape

    def graph_input_value_bits(self) -> list[int] | None:
        """Bits each graph input element's values need when a front end guarantees narrower
        ranges than the uniform code width (None: every element may use the full width)."""
        return None if self.front_end is None else self.front_end.value_bits

    def to_graph_layout(self, images: np.ndarray) -> np.ndarray:
        """(N, *image shape) as stored by the simulator -> (N, *graph input shape), through the
        front end when the model has one."""
        if self.front_end is not None:
            return self.front_end.apply(images)
        return graph_layout(images, self.input_shape)

    def step(self, images: np.ndarray) -> int:
        """Events per step for inputs like ``images`` (:data:`STEP_BYTES` of input)."""
        per_event = max(int(np.prod(np.shape(images)[1:])) * np.asarray(images).itemsize, 1)
        return int(np.clip(STEP_BYTES // per_event, 64, 65536))

    def predict_int(self, images: np.ndarray, batch: int | None = None
                    ) -> tuple[np.ndarray, int]:
        """Integer outputs and their power-of-two exponent (value = y_int * 2**exp)."""
        batch = batch or self.step(images)
        outs, exp = [], 0
        for s in range(0, len(images), batch):
            r = self.graph.run(self.to_graph_layout(images[s:s + batch]))
            outs.append(r.ints.reshape(len(r.ints), -1).astype(np.int64))
            exp = r.exp
        if not outs:
            return np.zeros((0, int(np.prod(self.graph.firmware_output_shape[1:]))),
                            np.int64), 0
        return np.concatenate(outs), exp

    def predict(self, images: np.ndarray | str | Path, batch: int | None = None) -> np.ndarray:
        """Network outputs as float64 (logits for classifiers, values for regressors): the
        graph's output, a float tail after the firmware included."""
        if isinstance(images, str | Path):
            return np.concatenate(list(self._predict_file(Path(images), batch)) or [
                np.zeros((0, int(np.prod(self.graph.output_shape[1:]))))])
        y_int, exp = self.predict_int(images, batch)
        if not self.graph.tail:
            return y_int.astype(np.float64) * 2.0**exp
        bound = int(np.abs(y_int).max(initial=0))
        y = self.graph.apply_tail(IntTensor(y_int.reshape(
            (len(y_int), *self.graph.firmware_output_shape[1:])), exp, bound))
        return y.reshape(len(y_int), -1)

    def predict_proba(self, images: np.ndarray | str | Path) -> np.ndarray:
        """Softmax class probabilities (classifiers)."""
        logits = self.predict(images)
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def _predict_file(self, path: Path, batch: int | None):
        with open_events_h5(path) as f, reading(path):
            hits = f["hits"]
            self.to_graph_layout(np.zeros((1, *hits.shape[1:]), np.uint8))  # fits, or refused
            batch = batch or self.step(hits[:1])
            for s in range(0, hits.shape[0], batch):
                yield self.predict(hits[s:s + batch], batch)


def load(model_dir: str | Path) -> ReferenceModel:
    """Load an exported model from its build directory (``build/<name>``) or ONNX file."""
    p = Path(model_dir)
    onnx_path = p / ONNX_NAME if p.is_dir() else p
    task, classes = "", None
    report = onnx_path.parent / REPORT_JSON
    if report.is_file():
        info = json.loads(report.read_text())
        task = info.get("task", "")
        classes = info.get("classes")
    return ReferenceModel(onnx_path, task=task, classes=classes)
