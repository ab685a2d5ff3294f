"""ONNX model validation before anything runs it, and the loaded, ready-to-run form of a version."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from services.common.errors import InvalidArgument
from services.scoring.features import FeatureSpec

# Operator domains a registered model may use: the standard operators and the classic ML
# operators (tree ensembles, linear classifiers, encoders). A custom domain would need code
# the runtime does not ship, so it is refused.
MAX_ML_OPSET = 5
ALLOWED_OPSETS = {
    "": (7, onnx.defs.onnx_opset_version()),
    "ai.onnx": (7, onnx.defs.onnx_opset_version()),
    "ai.onnx.ml": (1, MAX_ML_OPSET),
}

_NUMERIC_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
}
_OUTPUT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE}


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """Which model output holds the score: its name and, for a 2-D output, the column (for a
    binary classifier's probabilities, column 1 is the positive class)."""

    name: str
    column: int = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> OutputSpec:
        return cls(name=raw["name"], column=int(raw.get("column", 1)))


@dataclasses.dataclass(frozen=True)
class InputFeed:
    """One ONNX input and the features (by position in the schema) packed into it."""

    name: str
    dtype: type | None  # numpy dtype; None for a string input
    features: tuple[int, ...]
    rank: int
    covers_all: bool  # the input takes every feature in schema order


def _all_graphs(graph: onnx.GraphProto):
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _all_graphs(sub)


def parse_model(data: bytes, max_bytes: int, field: str = "onnx_model") -> onnx.ModelProto:
    """Parses and checks the file itself: size, format, self-containment, domains, checker."""
    if not data:
        raise InvalidArgument(field, "is empty")
    if len(data) > max_bytes:
        raise InvalidArgument(field, f"is {len(data)} bytes; the limit is {max_bytes} bytes")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise InvalidArgument(field, f"is not an ONNX model (protobuf decoding failed: {exc})") \
            from exc
    if not model.HasField("graph") or model.ir_version <= 0:
        raise InvalidArgument(field, "is not an ONNX model (no graph or IR version)")
    for tensor in external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise InvalidArgument(field, f"tensor {tensor.name!r} refers to external data; "
                                  "only self-contained models are accepted")
    if len(model.functions):
        raise InvalidArgument(field, "model-local functions are not accepted")
    for opset in model.opset_import:
        bounds = ALLOWED_OPSETS.get(opset.domain)
        if bounds is None:
            raise InvalidArgument(field, f"operator domain {opset.domain!r} is not allowed "
                                  "(allowed: ai.onnx, ai.onnx.ml)")
        if not bounds[0] <= opset.version <= bounds[1]:
            raise InvalidArgument(field, f"opset {opset.version} of domain "
                                  f"{opset.domain or 'ai.onnx'!r} is outside {bounds[0]}..{bounds[1]}")
    for graph in _all_graphs(model.graph):
        for node in graph.node:
            if node.domain not in ALLOWED_OPSETS:
                raise InvalidArgument(field, f"node {node.name or node.op_type!r} uses operator "
                                      f"domain {node.domain!r}, which is not allowed")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidArgument(field, f"fails the ONNX checker: {first}") from exc
    return model


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def plan_inputs(model: onnx.ModelProto, specs: Sequence[FeatureSpec],
                field: str = "feature_schema") -> list[InputFeed]:
    """Matches the declared features to the graph's inputs; refuses any mismatch."""
    inputs = _graph_inputs(model)
    by_name = {i.name: i for i in inputs}
    assigned: dict[str, list[int]] = {i.name: [] for i in inputs}
    problems: list[tuple[str, str]] = []
    for index, spec in enumerate(specs):
        target = spec.input
        if not target:
            if len(inputs) == 1:
                target = inputs[0].name
            elif spec.name in by_name:
                target = spec.name
        if target not in by_name:
            problems.append((f"{field}[{index}].input",
                             f"feature {spec.name!r} feeds no model input (inputs: "
                             f"{', '.join(sorted(by_name))})"))
            continue
        assigned[target].append(index)
    plan: list[InputFeed] = []
    for value in inputs:
        indices = assigned[value.name]
        if not indices:
            problems.append((field, f"model input {value.name!r} gets no feature"))
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            problems.append((field, f"model input {value.name!r} is not a tensor"))
            continue
        elem = value.type.tensor_type.elem_type
        dims = value.type.tensor_type.shape.dim
        rank = len(dims)
        is_string = elem == onnx.TensorProto.STRING
        if not is_string and elem not in _NUMERIC_TYPES:
            problems.append((field, f"model input {value.name!r} has unsupported element type "
                             f"{onnx.TensorProto.DataType.Name(elem)}"))
            continue
        for i in indices:
            if specs[i].is_string != is_string:
                problems.append((f"{field}[{i}].value_type",
                                 f"feature {specs[i].name!r} is {specs[i].value_type} but model "
                                 f"input {value.name!r} takes "
                                 f"{onnx.TensorProto.DataType.Name(elem).lower()}"))
        if rank not in (1, 2):
            problems.append((field, f"model input {value.name!r} has rank {rank}; 1 or 2 needed"))
            continue
        width = dims[1].dim_value if rank == 2 and dims[1].HasField("dim_value") else None
        if rank == 1 and len(indices) != 1:
            problems.append((field, f"model input {value.name!r} is 1-D but {len(indices)} "
                             "features are declared for it"))
        if width is not None and width != len(indices):
            problems.append((field, f"model input {value.name!r} takes {width} columns but "
                             f"{len(indices)} features are declared for it"))
        plan.append(InputFeed(value.name, None if is_string else _NUMERIC_TYPES[elem],
                              tuple(indices), rank,
                              tuple(indices) == tuple(range(len(specs)))))
    if problems:
        raise InvalidArgument(violations=problems)
    return plan


def check_output(model: onnx.ModelProto, output: OutputSpec, field: str = "output") -> None:
    outputs = {o.name: o for o in model.graph.output}
    if output.name not in outputs:
        raise InvalidArgument(f"{field}.name", f"the model has no output {output.name!r} "
                              f"(outputs: {', '.join(outputs)})")
    value = outputs[output.name]
    if value.type.WhichOneof("value") != "tensor_type":
        raise InvalidArgument(f"{field}.name", f"output {output.name!r} is not a tensor (convert "
                              "classifiers without ZipMap)")
    if value.type.tensor_type.elem_type not in _OUTPUT_TYPES:
        raise InvalidArgument(f"{field}.name", f"output {output.name!r} is not float or double")
    dims = value.type.tensor_type.shape.dim
    if len(dims) == 2 and dims[1].HasField("dim_value") and output.column >= dims[1].dim_value:
        raise InvalidArgument(f"{field}.column", f"output {output.name!r} has "
                              f"{dims[1].dim_value} columns; column {output.column} does not exist")
    if output.column < 0:
        raise InvalidArgument(f"{field}.column", "must not be negative")


def session_options(intra_op_threads: int) -> ort.SessionOptions:
    """Threads are set explicitly: the server already runs many request threads, so each
    session gets a fixed intra-op pool, one inter-op thread and no busy spinning."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, intra_op_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def _has_nan(values) -> bool:
    """Whether a sequence of numbers holds a NaN: their sum is NaN then (and when infinities
    of both signs meet, which only costs the caller a closer look)."""
    return math.isnan(sum(values))


class LoadedModel:
    """A model version ready to score: its session (created once), feature schema and feeds."""

    def __init__(self, name: str, version: int, data: bytes, specs: Sequence[FeatureSpec],
                 output: OutputSpec, plan: list[InputFeed], intra_op_threads: int = 1):
        self.name = name
        self.version = version  # also sets resource_name
        self.specs = tuple(specs)
        self.output = output
        self.plan = plan
        self.session = ort.InferenceSession(data, sess_options=session_options(intra_op_threads),
                                            providers=["CPUExecutionProvider"])
        self._output_names = [output.name]
        self.feature_index = {s.name: i for i, s in enumerate(self.specs)}
        self.lock = threading.Lock()
        self.has_strings = any(s.is_string for s in self.specs)
        # Numeric defaults as one row (NaN where a feature has none), so filling the missing
        # values of a batch is one vectorised call instead of one call per column.
        self.numeric_defaults = np.array(
            [float(s.default) if s.default is not None and not s.is_string else np.nan
             for s in self.specs], dtype=np.float64)
        self.has_numeric_defaults = bool(np.isfinite(self.numeric_defaults).any())
        # A model whose only input is a float matrix of every feature in schema order (what
        # training produces) is fed the caller's values directly, cast once to its type.
        # Integer inputs take the general path, which fills defaults before the cast.
        only = plan[0] if len(plan) == 1 else None
        self._direct = only if (only is not None and only.covers_all and only.rank == 2
                                and only.dtype in (np.float32, np.float64)) else None
        self._direct_defaults = (self.numeric_defaults.astype(self._direct.dtype)
                                 if self._direct is not None else None)
        # Whether ``run_values`` and ``score_row`` can feed rows straight to the model.
        self.direct = self._direct is not None and not self.has_strings
        self._row_slots = threading.local()
        # The one-user lookups of this schema (by internal and by external id), built by the
        # scoring core on first use and kept as long as the model is loaded.
        self.readers: dict[bool, Any] = {}
        self._layouts: dict[tuple, ColumnLayout] = {}

    @property
    def version(self) -> int:
        return self._version

    @version.setter
    def version(self, version: int) -> None:
        # A model validated before it is stored gets its number afterwards.
        self._version = version
        self.resource_name = f"models/{self.name}/versions/{version}"

    def feeds(self, numeric: np.ndarray, strings: dict[int, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        for feed in self.plan:
            if feed.dtype is None:
                array = np.stack([strings[i].astype(str) for i in feed.features], axis=1)
            elif feed.covers_all:
                array = numeric.astype(feed.dtype, copy=numeric.dtype != feed.dtype)
            else:
                array = numeric[:, feed.features].astype(feed.dtype)
            feeds[feed.name] = array[:, 0] if feed.rank == 1 else array
        return feeds

    def run(self, numeric: np.ndarray, strings: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """Scores a batch; returns float64 scores, one per row."""
        if numeric.shape[0] == 0:
            return np.empty(0)
        direct = self._direct
        if direct is not None and not strings:
            feeds = {direct.name: numeric.astype(direct.dtype, copy=numeric.dtype != direct.dtype)}
        else:
            feeds = self.feeds(numeric, strings or {})
        return self._scores(self.session.run(self._output_names, feeds)[0])

    def _scores(self, out: np.ndarray) -> np.ndarray:
        if out.ndim == 2:
            out = out[:, self.output.column]
        return np.asarray(out, dtype=np.float64).reshape(-1)


    def run_values(self, values, rows: int) -> np.ndarray:
        """Scores ``rows`` rows of every feature in schema order, given row-major as a
        buffer or sequence of numbers (only when ``direct``). The values are converted once,
        straight to the input's type (one rounding, as through float64), and missing values
        (NaN) take their feature's default."""
        feed = self._direct
        matrix = np.asarray(values, dtype=feed.dtype).reshape(rows, len(self.specs))
        if self.has_numeric_defaults:
            missing = np.isnan(matrix)
            if missing.any():
                # Never write into the caller's array.
                matrix = matrix.copy()
                np.copyto(matrix, self._direct_defaults,
                          where=missing & np.isfinite(self.numeric_defaults))
        return self._scores(self.session.run(self._output_names, {feed.name: matrix})[0])

    def score_row(self, values) -> float:
        """The score of one row of every feature in schema order (only when ``direct``), as a
        sequence of numbers with None or NaN for missing values, which take their feature's
        default. The online path: each thread keeps one input row and one output buffer
        bound to the session, so a call copies the values in, runs, and reads one number;
        no arrays are built per call."""
        slot = getattr(self._row_slots, "slot", None)
        if slot is None:
            slot = self._row_slots.slot = self._bind_row()
        binding, row, out, _ = slot
        row[0] = values
        if self.has_numeric_defaults and (None in values or _has_nan(values)):
            missing = np.isnan(row[0])
            np.copyto(row[0], self._direct_defaults,
                      where=missing & np.isfinite(self.numeric_defaults))
        self.session.run_with_iobinding(binding)
        return float(out[0, self.output.column] if out.ndim == 2 else out[0])

    def _bind_row(self) -> tuple:
        """This thread's input row and output buffer, bound to the session. The output's
        shape and type for one row are learnt by scoring a row of zeros."""
        feed = self._direct
        row = np.zeros((1, len(self.specs)), dtype=feed.dtype)
        probe = self.session.run(self._output_names, {feed.name: row})[0]
        out = np.empty_like(probe)
        value = ort.OrtValue.ortvalue_from_numpy(row)  # shares the row's memory
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(feed.name, value)
        binding.bind_output(self.output.name, "cpu", 0, out.dtype, list(out.shape),
                            out.ctypes.data)
        return binding, row, out, value

    def layout(self, columns: tuple[str, ...], string_columns: tuple[str, ...]) -> ColumnLayout:
        """Where each named column goes in the schema, checked once per set of names and
        remembered (callers send the same columns call after call)."""
        key = (columns, string_columns)
        found = self._layouts.get(key)
        if found is not None:
            return found
        found = ColumnLayout.build(self, columns, string_columns)
        if len(self._layouts) >= MAX_LAYOUTS:
            self._layouts.clear()
        self._layouts[key] = found
        return found


# Distinct column lists remembered per loaded model; more are checked again on each call.
MAX_LAYOUTS = 256


@dataclasses.dataclass(frozen=True)
class ColumnLayout:
    """The checked placement of a request's numeric and string columns in a schema."""

    positions: tuple[int, ...]
    string_positions: tuple[int, ...]
    identity: bool  # the numeric columns are every feature, in schema order

    @classmethod
    def build(cls, loaded: LoadedModel, columns: tuple[str, ...],
              string_columns: tuple[str, ...]) -> ColumnLayout:
        index = loaded.feature_index
        problems = []
        positions = []
        for i, name in enumerate(columns):
            if name not in index:
                problems.append((f"columns[{i}]", f"{name!r} is not a feature of "
                                 f"{loaded.resource_name}"))
            elif loaded.specs[index[name]].is_string:
                problems.append((f"columns[{i}]", f"{name!r} is a string feature; send it in "
                                 "string_columns"))
            positions.append(index.get(name, -1))
        string_positions = []
        for i, name in enumerate(string_columns):
            if name not in index:
                problems.append((f"string_columns[{i}]", f"{name!r} is not a feature of "
                                 f"{loaded.resource_name}"))
            elif not loaded.specs[index[name]].is_string:
                problems.append((f"string_columns[{i}]", f"{name!r} is a numeric feature"))
            string_positions.append(index.get(name, -1))
        all_names = columns + string_columns
        if len(set(all_names)) != len(all_names):
            problems.append(("columns", "a column is named twice"))
        if problems:
            raise InvalidArgument(violations=problems)
        return cls(tuple(positions), tuple(string_positions),
                   positions == list(range(len(loaded.specs))))


def trial_rows(specs: Sequence[FeatureSpec], rows: int = 2) -> tuple[np.ndarray, dict]:
    numeric = np.zeros((rows, len(specs)))
    strings = {}
    for i, spec in enumerate(specs):
        if spec.is_string:
            strings[i] = np.array([spec.default or ""] * rows, dtype=object)
        elif spec.default is not None:
            numeric[:, i] = float(spec.default)
    return numeric, strings


def validate(data: bytes, specs: Sequence[FeatureSpec], output: OutputSpec, *,
             max_bytes: int, name: str = "", version: int = 0,
             intra_op_threads: int = 1) -> LoadedModel:
    """Every check a model passes before it is stored; returns it loaded and trial-run."""
    model = parse_model(data, max_bytes)
    plan = plan_inputs(model, specs)
    check_output(model, output)
    try:
        loaded = LoadedModel(name, version, data, specs, output, plan, intra_op_threads)
    except Exception as exc:  # noqa: BLE001 - any runtime refusal is the file's fault
        raise InvalidArgument("onnx_model", f"ONNX Runtime cannot load the model: "
                              f"{str(exc).splitlines()[0][:300]}") from exc
    numeric, strings = trial_rows(specs)
    try:
        scores = loaded.run(numeric, strings)
    except InvalidArgument:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidArgument("onnx_model", f"trial inference failed: "
                              f"{str(exc).splitlines()[0][:300]}") from exc
    if scores.shape != (numeric.shape[0],):
        raise InvalidArgument("output", f"trial inference gave {scores.shape[0]} scores for "
                              f"{numeric.shape[0]} rows")
    if not np.all(np.isfinite(scores)):
        raise InvalidArgument("output", "trial inference gave non-finite scores")
    return loaded
