"""Tree thresholds snapped to float32 keep scikit-learn's decisions and give ONNX parity."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline

from services.scoring import training
from services.scoring.features import FeatureSpec


def rounding_up_pair() -> tuple[np.float32, np.float32, np.float32]:
    """Two cent amounts whose float64 midpoint rounds UP to a float32 between them."""
    for cents in range(4000, 5000):
        a, b = np.float32(cents / 100), np.float32((cents + 2) / 100)
        mid = (np.float64(a) + np.float64(b)) / 2
        if np.float64(np.float32(mid)) > mid:
            return a, b, np.float32(mid)
    raise AssertionError("no such pair")


# skl2onnx already corrects the thresholds of scikit-learn's own decision trees; its
# HistGradientBoosting converter does not, which is what the snapping is for.
@pytest.mark.parametrize("model,flips_unsnapped", [
    (HistGradientBoostingClassifier(max_iter=5, random_state=0), True),
    (RandomForestClassifier(n_estimators=5, random_state=0), False),
])
def test_a_value_on_the_rounded_threshold_scores_the_same_in_onnx(model, flips_unsnapped):
    a, b, on_threshold = rounding_up_pair()
    x = np.array([[a]] * 60 + [[b]] * 60, dtype=np.float32)
    y = np.array([0] * 60 + [1] * 60)
    model.fit(x, y)
    probe = np.array([[on_threshold]], dtype=np.float32)
    spec = [FeatureSpec("spend", "event", "purchase", input="features")]

    def onnx_score(fitted) -> float:
        pipeline = Pipeline([("model", fitted)])
        session = ort.InferenceSession(training.to_onnx_bytes(pipeline, spec),
                                       providers=["CPUExecutionProvider"])
        return float(session.run(["probabilities"], {"features": probe})[0][0, 1])

    before = model.predict_proba(x)[:, 1], float(model.predict_proba(probe)[0, 1])
    # Unsnapped, the probe sits right of the float64 threshold but left of the float32 one.
    assert (abs(onnx_score(model) - before[1]) > 0.1) == flips_unsnapped
    training.snap_thresholds_to_float32(model)
    assert np.array_equal(model.predict_proba(x)[:, 1], before[0])
    assert float(model.predict_proba(probe)[0, 1]) == before[1]
    assert abs(onnx_score(model) - before[1]) <= 1e-5
