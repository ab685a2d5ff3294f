"""The model registry: validated registration, versions, aliases (promotion and rollback)."""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Sequence
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.scoring.features import FeatureSpec, now_ms, validate_specs
from services.scoring.onnx_model import LoadedModel, OutputSpec, validate
from services.scoring.store import ModelVersion, ScoringStore

PRODUCTION = "production"
TASKS = ("conversion", "churn", "lookalike", "other")
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
ALIAS_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
VERSION_NAME_RE = re.compile(r"^models/([^/@]+)/versions/(\d+)$")
ALIAS_NAME_RE = re.compile(r"^models/([^/@]+)@([^/@]+)$")


def parse_version_name(name: str, field: str = "name") -> tuple[str, int | str]:
    """Splits ``models/{model}/versions/{n}`` or ``models/{model}@{alias}``."""
    match = VERSION_NAME_RE.match(name or "")
    if match:
        return match.group(1), int(match.group(2))
    match = ALIAS_NAME_RE.match(name or "")
    if match:
        return match.group(1), match.group(2)
    raise InvalidArgument(field, f"{name!r} is not 'models/{{model}}/versions/{{n}}' or "
                          "'models/{model}@{alias}'")


def parse_model_name(name: str, field: str = "model") -> str:
    model = name.removeprefix("models/")
    if not NAME_RE.match(model):
        raise InvalidArgument(field, f"{name!r} is not a model name ('models/{{model}}' with "
                              "lower-case letters, digits, '-' and '_')")
    return model


class ModelRegistry:
    """Registers validated versions and keeps one loaded session per version in memory."""

    def __init__(self, store: ScoringStore, *, max_model_bytes: int = 64 * 1024 * 1024,
                 intra_op_threads: int = 1, alias_ttl_s: float = 1.0):
        self.store = store
        self.max_model_bytes = max_model_bytes
        self.intra_op_threads = intra_op_threads
        self.alias_ttl_s = alias_ttl_s
        self._loaded: dict[tuple[str, int], LoadedModel] = {}
        self._aliases: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._load_locks: dict[tuple[str, int], threading.Lock] = {}

    # Registration ---------------------------------------------------------------------------

    def register(self, model_name: str, task: str, onnx_bytes: bytes,
                 features: Sequence[FeatureSpec], output: OutputSpec, *, description: str = "",
                 metrics: dict[str, Any] | None = None, lineage: dict[str, Any] | None = None,
                 created_by: str = "") -> ModelVersion:
        """Validates everything, then stores the version; a failure stores nothing."""
        model = parse_model_name(model_name, "model")
        if task not in TASKS:
            raise InvalidArgument("task", f"must be one of {', '.join(TASKS)}")
        validate_specs(features, "feature_schema")
        loaded = validate(onnx_bytes, features, output, max_bytes=self.max_model_bytes,
                          name=model, intra_op_threads=self.intra_op_threads)
        version = self.store.insert_version({
            "model_name": model, "task": task, "description": description,
            "onnx_bytes": onnx_bytes, "onnx_sha256": hashlib.sha256(onnx_bytes).hexdigest(),
            "feature_schema": [f.to_dict() for f in features], "output": output.to_dict(),
            "metrics": metrics or {}, "lineage": lineage or {}, "created_ms": now_ms(),
            "created_by": created_by,
        })
        # The session built for validation is the one served: no second load.
        loaded.version = version
        with self._lock:
            self._loaded[(model, version)] = loaded
        return self.get(model, version)

    # Reads ----------------------------------------------------------------------------------

    def resolve(self, model: str, ref: int | str, field: str = "name") -> int:
        """The version number of ``ref`` (a number or an alias)."""
        if isinstance(ref, int):
            return ref
        key = (model, ref)
        cached = self._aliases.get(key)
        if cached is not None and time.monotonic() - cached[1] < self.alias_ttl_s:
            return cached[0]
        version = self.store.resolve_alias(model, ref)
        if version is None:
            raise NotFound("alias", f"models/{model}@{ref}")
        self._aliases[key] = (version, time.monotonic())
        return version

    def get(self, model: str, ref: int | str = PRODUCTION) -> ModelVersion:
        version = self.resolve(model, ref)
        found = self.store.get_version(model, version)
        if found is None:
            raise NotFound("model version", f"models/{model}/versions/{version}")
        return found

    def get_by_name(self, name: str, field: str = "name") -> ModelVersion:
        model, ref = parse_version_name(name, field)
        return self.get(model, ref)

    def list_versions(self, model: str, after_version: int, limit: int) -> list[ModelVersion]:
        return self.store.list_versions(parse_model_name(model), after_version, limit)

    def list_models(self, after_name: str, limit: int) -> list[dict[str, Any]]:
        return self.store.list_models(after_name, limit)

    # Serving sessions -----------------------------------------------------------------------

    def loaded(self, model: str, ref: int | str = PRODUCTION) -> LoadedModel:
        """The loaded session of a version, created on first use and reused afterwards."""
        version = self.resolve(model, ref)
        key = (model, version)
        found = self._loaded.get(key)
        if found is not None:
            return found
        with self._lock:
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:
            found = self._loaded.get(key)
            if found is not None:
                return found
            meta = self.store.get_version(model, version)
            data = self.store.version_bytes(model, version)
            if meta is None or data is None:
                raise NotFound("model version", f"models/{model}/versions/{version}")
            from services.scoring.onnx_model import parse_model, plan_inputs

            plan = plan_inputs(parse_model(data, max(len(data), self.max_model_bytes)),
                               meta.features)
            found = LoadedModel(model, version, data, meta.features, meta.output, plan,
                                self.intra_op_threads)
            with self._lock:
                self._loaded[key] = found
            return found

    def load_production(self) -> list[str]:
        """Loads every model's production version (readiness waits for this)."""
        names = []
        for model, version in self.store.all_aliases(PRODUCTION):
            names.append(self.loaded(model, version).resource_name)
        return names

    # Changes --------------------------------------------------------------------------------

    def delete(self, model: str, version: int) -> None:
        aliases = self.store.alias_targets(model, version)
        if aliases:
            raise FailedPrecondition(
                f"models/{model}/versions/{version} is the target of alias(es) "
                f"{', '.join(aliases)}; move them first",
                [("ALIAS", f"models/{model}@{a}", "points at this version") for a in aliases])
        if not self.store.delete_version(model, version):
            raise NotFound("model version", f"models/{model}/versions/{version}")
        with self._lock:
            self._loaded.pop((model, version), None)

    def set_alias(self, model: str, alias: str, version: int, actor: str = "") -> int | None:
        if not ALIAS_RE.match(alias or ""):
            raise InvalidArgument("alias", f"{alias!r} is not an alias name (lower-case letters, "
                                  "digits, '-' and '_')")
        if self.store.get_version(model, version) is None:
            raise NotFound("model version", f"models/{model}/versions/{version}")
        previous = self.store.set_alias(model, alias, version, actor, now_ms())
        self._aliases[(model, alias)] = (version, time.monotonic())
        return previous

    def promote(self, model: str, version: int, actor: str = "") -> int | None:
        previous = self.set_alias(model, PRODUCTION, version, actor)
        # Load before answering, so the first score after a promotion does not pay for it.
        self.loaded(model, version)
        return previous

    def rollback(self, model: str, alias: str = PRODUCTION) -> tuple[int, int]:
        moved = self.store.rollback_alias(model, alias, now_ms())
        if moved is None:
            raise FailedPrecondition(
                f"models/{model}@{alias} has no earlier version to return to",
                [("ALIAS_HISTORY", f"models/{model}@{alias}", "no earlier assignment")])
        self._aliases[(model, alias)] = (moved[1], time.monotonic())
        return moved
