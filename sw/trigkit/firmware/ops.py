"""The ops of the exact firmware paths, declared once.

Every QONNX op that trigkit turns into integers is declared here with the attributes the three
implementations read: the integer reference (:mod:`.reference`), the hls4ml precision analysis
(:mod:`.hls`) and the da4ml RTL tracer (:mod:`.rtl`). Each of those modules keeps one handler per
declared op (in the style of hls4ml's ``@onnx_handler``) and checks at import that it has one
for every op here, so support cannot drift between them. :func:`check_graph` refuses, before
any output is produced, every node whose op or attribute values are not declared, listing all
of them with the reason and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from trigkit.core.errors import TrigkitError

#: qonnx's domain of channels-last Conv / MaxPool nodes.
CHANNELS_LAST = "qonnx.custom_op.channels_last"

#: An attribute rule: the problem with a value, or None when it is implemented.
Rule = Callable[[Any], str | None]


def any_value(_value: Any) -> str | None:
    return None


def each_equal(wanted: int, what: str) -> Rule:
    """Every entry of a list attribute must equal ``wanted``."""

    def rule(value: Any) -> str | None:
        values = list(value) if isinstance(value, list | tuple) else [value]
        return None if all(v == wanted for v in values) else f"{what} {values}"

    return rule


def equal(wanted: Any, what: str) -> Rule:
    def rule(value: Any) -> str | None:
        v = value.decode() if isinstance(value, bytes) else value
        return None if v == wanted else f"{what} {v!r}"

    return rule


def two_dims(value: Any) -> str | None:
    """A 2-D kernel (1-D convolutions are made 2-D by the export's Change3DTo4DTensors)."""
    return None if len(list(value)) == 2 else (
        f"{len(list(value))}-D kernel {list(value)} (only 2-D; 1-D convolutions are made 2-D "
        "by trigkit's export cleanup)")


def _po2_window(value: Any) -> str | None:
    """A 2-D window whose size is a power of two (the average is then exact)."""
    dims = list(value)
    if len(dims) != 2:
        return two_dims(value)
    n = dims[0] * dims[1]
    return None if n & (n - 1) == 0 else f"window {dims} of {n} elements (not a power of two)"


def _batch_first(perm: Any) -> str | None:
    perm = list(perm)
    return None if perm and perm[0] == 0 else f"perm {perm} moves the batch axis"


@dataclass(frozen=True)
class OpSpec:
    """One supported op: what it computes, its attributes, where its inputs come from."""

    op_type: str
    summary: str
    #: attribute -> rule; any other attribute is refused by name
    attributes: dict[str, Rule] = field(default_factory=dict)
    #: the fix to name when an attribute value is refused
    attribute_fix: str = ""
    #: must be in qonnx's channels-last domain (after ConvertToChannelsLastAndClean)
    channels_last: bool = False
    #: the second input is a constant fed through a Quant node (weights)
    quantised_weights: bool = False
    #: most inputs the node may have (more: e.g. a bias)
    max_inputs: int = 1
    #: fewest inputs the node must have
    min_inputs: int = 1


OPS: dict[str, OpSpec] = {op.op_type: op for op in (
    OpSpec("Quant", "round half to even onto a power-of-two grid, then clip",
           {"signed": any_value, "narrow": any_value,
            "rounding_mode": equal("ROUND", "rounding mode")},
           "use ROUND (half to even), Brevitas' default", max_inputs=4),
    OpSpec("BipolarQuant", "1-bit quantiser: x >= 0 -> +scale, else -scale (power-of-two "
           "scale); weights and activations, not the raw graph input", min_inputs=2,
           max_inputs=2),
    OpSpec("Conv", "2-D convolution (1-D as 2-D of width 1) against quantised constant "
           "weights, optionally plus a quantised constant bias",
           {"kernel_shape": two_dims, "strides": any_value, "pads": any_value,
            "dilations": each_equal(1, "dilations"), "group": equal(1, "group"),
            "auto_pad": equal("NOTSET", "auto_pad")},
           "use an ungrouped, undilated convolution with explicit pads", channels_last=True,
           quantised_weights=True, max_inputs=3),
    OpSpec("MatMul", "product with a quantised constant matrix, no bias",
           quantised_weights=True, max_inputs=2),
    OpSpec("MaxPool", "2-D max pooling without padding (an OR of single bits)",
           {"kernel_shape": two_dims, "strides": any_value, "pads": each_equal(0, "pads"),
            "ceil_mode": equal(0, "ceil_mode"), "dilations": each_equal(1, "dilations"),
            "auto_pad": equal("NOTSET", "auto_pad"), "storage_order": equal(0, "storage_order")},
           "use unpadded, undilated pooling with floor mode", channels_last=True),
    OpSpec("AveragePool", "2-D average pooling (NCHW, as the channels-last cleanup leaves "
           "it) over a window of a power-of-two size, without padding: the window sum on a "
           "grid 2**k finer",
           {"kernel_shape": _po2_window, "strides": any_value, "pads": each_equal(0, "pads"),
            "ceil_mode": equal(0, "ceil_mode"), "count_include_pad": any_value,
            "auto_pad": equal("NOTSET", "auto_pad"), "dilations": each_equal(1, "dilations")},
           "use an unpadded window of 2, 4, 8, ... elements (e.g. 2 x 2) in floor mode"),
    OpSpec("Relu", "max(x, 0)"),
    OpSpec("Flatten", "flatten everything after the batch axis",
           {"axis": equal(1, "axis")}, "flatten from axis 1"),
    OpSpec("Reshape", "reshape to a constant shape keeping the batch axis",
           {"allowzero": equal(0, "allowzero")}, "use allowzero=0", max_inputs=2),
    OpSpec("Transpose", "permute the axes after the batch axis",
           {"perm": _batch_first}, "keep the batch axis first"),
    OpSpec("Add", "sum of two quantised tensors or of a tensor and a constant (a bias), on the "
           "finer of their grids; exact while every result fits float32's 24 bits, as QONNX "
           "computes it in float32", max_inputs=2, min_inputs=2),
    OpSpec("Sub", "difference, like Add", max_inputs=2, min_inputs=2),
    OpSpec("Mul", "product with a constant (e.g. input preprocessing); exact while every "
           "result fits 24 bits", max_inputs=2, min_inputs=2),
    OpSpec("Div", "quotient by a constant power of two", max_inputs=2, min_inputs=2),
)}

#: Why common unsupported ops are refused, and what to do instead.
_OP_FIXES = {
    "Gemm": "run qonnx's GemmToMatMul() on the cleaned graph (and export with dynamo=False: "
    "with the dynamo exporter a bias-less Linear gives a Gemm that GemmToMatMul cannot convert)",
    "Trunc": "Trunc (from QuantAvgPool2d or a truncating quantiser) has no exact path: use "
    "MaxPool or a plain Quant instead",
    "MultiThreshold": "MultiThreshold comes from FINN streamlining, which hls4ml cannot read: "
    "convert the QONNX export itself, before any FINN transformation",
    "QuantizeLinear": "QCDQ-style ONNX is not supported: export with "
    "brevitas.export.export_qonnx (QONNX Quant nodes) instead of export_onnx_qcdq",
    "DequantizeLinear": "QCDQ-style ONNX is not supported: export with "
    "brevitas.export.export_qonnx (QONNX Quant nodes) instead of export_onnx_qcdq",
}
_OP_PROBLEMS = {
}


def node_label(node) -> str:
    return f"node {node.name!r} ({node.op_type})"


def _attribute_values(node) -> dict[str, Any]:
    from onnx import helper  # onnx is only needed once a graph is being checked

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def node_problems(node) -> list[str]:
    """Why ``node`` is outside the declared support ("" problems: it is supported)."""
    spec = OPS.get(node.op_type)
    if spec is None:
        problem = _OP_PROBLEMS.get(node.op_type,
                                   f"{node.op_type} is not supported by the exact paths")
        fix = _OP_FIXES.get(node.op_type, "rewrite the graph with the supported ops ("
                            + ", ".join(OPS) + ")")
        return [f"{node_label(node)}: {problem}; fix: {fix}"]
    problems = []
    for name, value in _attribute_values(node).items():
        rule = spec.attributes.get(name)
        if rule is None:
            problems.append(f"{node_label(node)}: attribute {name} is not implemented; fix: "
                            f"export without it")
        elif (why := rule(value)) is not None:
            problems.append(f"{node_label(node)}: unsupported {why}; fix: {spec.attribute_fix}")
    if spec.channels_last and node.domain != CHANNELS_LAST:
        problems.append(f"{node_label(node)}: the graph is not channels-last (NHWC); fix: run "
                        "qonnx's ConvertToChannelsLastAndClean(make_input_channels_last=True)")
    if len([i for i in node.input if i]) < spec.min_inputs:
        problems.append(f"{node_label(node)}: has {len(node.input)} inputs, needs "
                        f"{spec.min_inputs}; fix: export it from Brevitas / PyTorch")
    if len([i for i in node.input if i]) > spec.max_inputs:
        fix = "use bias=False" if spec.quantised_weights else "export it from Brevitas"
        problems.append(f"{node_label(node)}: has {len(node.input)} inputs (a bias?), at most "
                        f"{spec.max_inputs} are supported; fix: {fix}")
    return problems


def check_nodes(nodes: Iterable) -> None:
    """Raise one TrigkitError listing every node outside the declared support."""
    problems = [p for node in nodes for p in node_problems(node)]
    if problems:
        raise TrigkitError("; ".join(problems) if len(problems) == 1 else
                           f"{len(problems)} problems:\n  " + "\n  ".join(problems))


def check_handlers(path: str, handlers: Iterable[str]) -> None:
    """Assert at import that a path implements exactly the declared ops."""
    have, want = set(handlers), set(OPS)
    if have != want:
        raise AssertionError(f"{path} handles {sorted(have)}, declared ops are {sorted(want)}")
