"""Model registry: validated registration, versions, aliases, promotion, rollback, deletion."""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.scoring.features import FeatureSpec
from services.scoring.onnx_model import OutputSpec
from tests.scoring import models

OUT = OutputSpec("probabilities", 1)


def test_register_get_list_and_versions_count_up(bank_core):
    reg = bank_core.registry
    first = bank_core.register("loan", "conversion", models.logistic_onnx(), models.FEATURES, OUT,
                               description="first", metrics={"auc": 0.9})
    second = bank_core.register("loan", "conversion", models.logistic_onnx(seed=1),
                                models.FEATURES, OUT)
    assert (first.version, second.version) == (1, 2)
    got = reg.get("loan", 1)
    assert got.description == "first" and got.metrics["auc"] == 0.9
    assert [f.name for f in got.features] == ["income", "age", "cc_avg"]
    assert got.features[2].default == 0.0
    assert got.sha256 != reg.get("loan", 2).sha256
    assert [v.version for v in reg.list_versions("loan", 0, 10)] == [1, 2]
    assert [v.version for v in reg.list_versions("loan", 1, 10)] == [2]
    summary = reg.list_models("", 10)
    assert summary[0]["name"] == "loan" and summary[0]["versions"] == 2
    with pytest.raises(NotFound):
        reg.get("loan", 3)


def test_promote_rollback_and_aliases(bank_core):
    reg = bank_core.registry
    for seed in range(3):
        bank_core.register("loan", "conversion", models.logistic_onnx(seed=seed),
                           models.FEATURES, OUT)
    with pytest.raises(NotFound):
        reg.get("loan", "production")
    assert reg.promote("loan", 1) is None
    assert reg.promote("loan", 2) == 1
    assert reg.promote("loan", 3) == 2
    assert reg.get("loan").version == 3
    assert reg.get("loan", 3).aliases == ["production"]
    assert reg.rollback("loan") == (3, 2)
    assert reg.get("loan").version == 2
    assert reg.rollback("loan") == (2, 1)
    assert reg.loaded("loan").version == 1
    with pytest.raises(FailedPrecondition):
        reg.rollback("loan")
    reg.set_alias("loan", "staging", 3)
    assert reg.get("loan", "staging").version == 3
    with pytest.raises(InvalidArgument):
        reg.set_alias("loan", "Bad Alias!", 3)
    with pytest.raises(NotFound):
        reg.set_alias("loan", "staging", 9)


def test_delete_refuses_aliased_versions(bank_core):
    reg = bank_core.registry
    bank_core.register("loan", "conversion", models.logistic_onnx(), models.FEATURES, OUT)
    bank_core.register("loan", "conversion", models.logistic_onnx(seed=2), models.FEATURES, OUT)
    reg.promote("loan", 1)
    with pytest.raises(FailedPrecondition) as err:
        reg.delete("loan", 1)
    assert "production" in err.value.description
    reg.delete("loan", 2)
    assert [v.version for v in reg.list_versions("loan", 0, 10)] == [1]
    with pytest.raises(NotFound):
        reg.delete("loan", 2)


def test_sessions_are_loaded_once_and_reused(bank_core):
    bank_core.register("loan", "conversion", models.logistic_onnx(), models.FEATURES, OUT)
    reg = bank_core.registry
    first = reg.loaded("loan", 1)
    assert reg.loaded("loan", 1) is first
    # A registry started afresh (another process) loads from the stored bytes.
    from services.scoring.registry import ModelRegistry

    fresh = ModelRegistry(reg.store)
    reloaded = fresh.loaded("loan", 1)
    assert reloaded is not first and fresh.loaded("loan", 1) is reloaded
    assert reloaded.session.get_session_options().intra_op_num_threads == 1


BAD_FILES = {
    "not onnx": (lambda: b"this is a text file, not a model", "onnx_model", "not an ONNX model"),
    "empty": (lambda: b"", "onnx_model", "empty"),
    "corrupt": (lambda: models.logistic_onnx()[:-40], "onnx_model", ""),
    "custom domain": (models.custom_domain_onnx, "onnx_model", "com.example"),
    "external data": (models.external_data_onnx, "onnx_model", "external data"),
    "checker": (models.broken_graph_onnx, "onnx_model", "checker"),
    "opset": (models.old_opset_onnx, "onnx_model", "opset 99"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_are_refused_and_nothing_is_stored(bank_core, case):
    make, field, words = BAD_FILES[case]
    with pytest.raises(InvalidArgument) as err:
        bank_core.register("loan", "conversion", make(), models.FEATURES, OUT)
    assert err.value.violations[0][0] == field
    assert words in err.value.description
    assert bank_core.registry.list_models("", 10) == []


def test_size_limit(make_core, bank_url):
    core = make_core(bank_url, max_model_bytes=200)
    with pytest.raises(InvalidArgument) as err:
        core.register("loan", "conversion", models.logistic_onnx(), models.FEATURES, OUT)
    assert "limit is 200 bytes" in err.value.description
    assert core.registry.list_models("", 10) == []


SCHEMA_CASES = {
    "too many features": (models.FEATURES + [FeatureSpec("family", "attribute", "family")],
                          OUT, "takes 3 columns but 4"),
    "string for float input": ([*models.FEATURES[:2],
                                FeatureSpec("stage", "trait", "lifecycle_stage", "string")],
                               OUT, "takes float"),
    "wrong input name": ([FeatureSpec("income", "attribute", "income", input="x"),
                          *models.FEATURES[1:]], OUT, "feeds no model input"),
    "unknown output": (models.FEATURES, OutputSpec("scores", 1), "no output 'scores'"),
    "output column": (models.FEATURES, OutputSpec("probabilities", 5), "column 5"),
    "unknown attribute": ([FeatureSpec("shoe", "attribute", "shoe_size"),
                           *models.FEATURES[1:]], OUT, "'shoe_size' does not exist"),
    "unknown trait": ([FeatureSpec("x", "trait", "karma"), *models.FEATURES[1:]], OUT,
                      "unknown computed trait"),
    "duplicate names": ([models.FEATURES[0], models.FEATURES[0], models.FEATURES[2]], OUT,
                        "duplicate"),
}


@pytest.mark.parametrize("case", sorted(SCHEMA_CASES))
def test_schema_mismatches_are_refused(bank_core, case):
    features, output, words = SCHEMA_CASES[case]
    with pytest.raises(InvalidArgument) as err:
        bank_core.register("loan", "conversion", models.logistic_onnx(), features, output)
    assert words in err.value.description
    assert bank_core.registry.list_models("", 10) == []


def test_bad_names_and_tasks(bank_core):
    with pytest.raises(InvalidArgument) as err:
        bank_core.register("Loan Model", "conversion", models.logistic_onnx(), models.FEATURES, OUT)
    assert err.value.violations[0][0] == "model"
    with pytest.raises(InvalidArgument) as err:
        bank_core.register("loan", "astrology", models.logistic_onnx(), models.FEATURES, OUT)
    assert err.value.violations[0][0] == "task"
