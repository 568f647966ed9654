"""Fixed front ends in firmware: how an exported graph records one, its integer twin, its RTL.

A hit-feature model (``architecture.kind: l0_hitfeat``) exports only its learned network to
QONNX; the fixed front end before it (:mod:`trigkit.learn.frontend`) is recorded in the ONNX
file's metadata (``trigkit.front_end``), so the file stays the single source of truth: the
integer reference applies the numpy twin before the graph, the RTL puts the hand-written
``hw/common/row_clusters.v`` before the da4ml network, and the test vectors stay hit images.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from trigkit.core.errors import TrigkitError
from trigkit.learn.frontend import (
    FEATURES_PER_ROW,
    row_clusters_bits,
    row_clusters_index_bits,
    row_clusters_numpy,
    row_clusters_value_bits,
)

#: ONNX metadata key of the front end.
META_KEY = "trigkit.front_end"
#: Hand-written Verilog of the front end (in hw/common).
ROW_CLUSTERS_SOURCE = "row_clusters.v"
_MAX_ROWS, _MAX_WIDTH = 64, 4096


@dataclass(frozen=True)
class RowClustersFrontEnd:
    """Per row: doubled centres of the lowest and the highest cluster, a hit flag and the log2
    of their separation (``row_clusters`` in hw/common)."""

    rows: int
    width: int
    #: register stages of hw/common/row_clusters.v
    latency_cycles: int = 4
    kind: str = "row_clusters"

    @property
    def feature_bits(self) -> int:
        """Width of one feature code (unsigned) on the network's input."""
        return row_clusters_bits(self.width)

    @property
    def value_bits(self) -> list[int]:
        """Bits each feature's values need (the hit flags 1, the logs 8 at 384 columns)."""
        return row_clusters_value_bits(self.rows, self.width)

    @property
    def n_features(self) -> int:
        return FEATURES_PER_ROW * self.rows

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.rows, self.width

    def apply(self, images: np.ndarray) -> np.ndarray:
        """(N, rows, width) hit images (or (N, rows, width, 1)) -> (N, 4 rows) features."""
        x = np.asarray(images)
        if x.ndim == 4 and x.shape[-1] == 1:
            x = x[..., 0]
        elif x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.shape[1:] != self.input_shape:
            raise TrigkitError(f"images of shape {list(x.shape[1:])} do not fit the model input "
                               f"{list(self.input_shape)} (front end {self.kind})")
        return row_clusters_numpy(x)

    def metadata(self) -> str:
        return json.dumps({"kind": self.kind, "rows": self.rows, "width": self.width})

    def verilog(self, features_wire: str, hits_wire: str) -> str:
        """The instance of hw/common/row_clusters.v inside a design's trigkit_core."""
        return (f"    row_clusters #(.ROWS({self.rows}), .WIDTH({self.width}), "
                f".IDX_BITS({row_clusters_index_bits(self.width)}), "
                f".FEAT_BITS({self.feature_bits})) "
                "front_end (\n"
                f"        .clk(clk),\n        .hits({hits_wire}),\n"
                f"        .features({features_wire})\n    );\n")


def read_front_end(model_proto) -> RowClustersFrontEnd | None:
    """The front end recorded in an ONNX ModelProto, checked (a file from anywhere may carry
    any metadata: only a known kind with integer sizes in range is accepted)."""
    props = {p.key: p.value for p in model_proto.metadata_props}
    if META_KEY not in props:
        return None
    try:
        info = json.loads(props[META_KEY])
    except json.JSONDecodeError:
        info = None
    if not isinstance(info, dict) or info.get("kind") != "row_clusters" or set(info) != {
            "kind", "rows", "width"}:
        raise TrigkitError(f"ONNX metadata {META_KEY} = {props[META_KEY]!r} is not a known front "
                           'end; expected {"kind": "row_clusters", "rows": R, "width": W}')
    rows, width = info["rows"], info["width"]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (rows, width)) or not (
            1 <= rows <= _MAX_ROWS and 2 <= width <= _MAX_WIDTH):
        raise TrigkitError(f"ONNX metadata {META_KEY}: rows {rows!r} and width {width!r} must be "
                           f"integers in 1..{_MAX_ROWS} and 2..{_MAX_WIDTH}")
    return RowClustersFrontEnd(rows, width)


def attach_front_end(model_wrapper, front_end: RowClustersFrontEnd) -> None:
    """Record ``front_end`` in the graph's metadata (checked against the graph's input)."""
    shape = model_wrapper.get_tensor_shape(model_wrapper.graph.input[0].name)
    if list(shape[1:]) != [front_end.n_features]:
        raise TrigkitError(f"the network's input {shape[1:]} does not take the "
                           f"{front_end.n_features} front-end features")
    props = model_wrapper.model.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == META_KEY:
            del props[i]
    entry = props.add()
    entry.key, entry.value = META_KEY, front_end.metadata()
