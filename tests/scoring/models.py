"""Small ONNX models for registry tests, built with scikit-learn and skl2onnx or by hand."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from services.scoring.features import FeatureSpec

FEATURES = [FeatureSpec("income", "attribute", "income"), FeatureSpec("age", "attribute", "age"),
            FeatureSpec("cc_avg", "attribute", "cc_avg", default=0.0)]


def logistic_onnx(width: int = 3, seed: int = 0, loc=0.0, scale=1.0) -> bytes:
    """A logistic regression on ``width`` float columns, input "features", fitted on normal
    columns of the given means and spreads (per column or for all)."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    standard = rng.normal(size=(200, width))
    x = (standard * np.asarray(scale) + np.asarray(loc)).astype(np.float32)
    y = (standard[:, 0] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    onx = to_onnx(model, initial_types=[("features", FloatTensorType([None, width]))],
                  options={id(model): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    return onx.SerializeToString()


def custom_domain_onnx() -> bytes:
    """A graph with one node from a custom operator domain."""
    node = helper.make_node("Secret", ["features"], ["probabilities"], domain="com.example")
    graph = helper.make_graph(
        [node], "custom",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    return model.SerializeToString()


def external_data_onnx() -> bytes:
    """A graph whose weight tensor points at an external file."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 2], np.zeros(6, np.float32))
    weight.ClearField("float_data")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    node = helper.make_node("MatMul", ["features", "w"], ["probabilities"])
    graph = helper.make_graph(
        [node], "external",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])],
        initializer=[weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def broken_graph_onnx() -> bytes:
    """Parses as ONNX but fails the checker: a node reads an input nobody produces."""
    node = helper.make_node("Add", ["features", "nowhere"], ["probabilities"])
    graph = helper.make_graph(
        [node], "broken",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def old_opset_onnx() -> bytes:
    model = onnx.load_from_string(logistic_onnx())
    for opset in model.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = 99
    return model.SerializeToString()
