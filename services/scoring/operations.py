"""Long-running operations: persisted, run on a worker thread, polled by clients."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, ServiceError
from services.scoring.features import now_ms
from services.scoring.store import ScoringStore
from services.scoring.training import Cancelled

log = logging.getLogger("marketing.scoring.operations")

TERMINAL = ("succeeded", "failed", "cancelled")
# google.rpc.Code values stored with a failed operation.
CODE_CANCELLED = 1
CODE_INTERNAL = 13

Work = Callable[[Callable[[int, str], None], Callable[[], bool], str], dict[str, Any]]


class OperationRunner:
    """Starts work on a small pool of worker threads and records its state in the database,
    so that any replica (and a restarted process) can answer GetOperation."""

    def __init__(self, store: ScoringStore, workers: int = 1):
        self.store = store
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                       thread_name_prefix="scoring-op")
        self._cancel: dict[str, threading.Event] = {}
        self._done: dict[str, threading.Event] = {}

    def recover(self) -> int:
        """Marks operations a previous process left unfinished as failed."""
        return self.store.fail_interrupted(now_ms())

    def start(self, kind: str, request: dict[str, Any], work: Work, created_by: str = "") -> str:
        name = f"operations/{kind}-{uuid.uuid4().hex[:16]}"
        now = now_ms()
        self.store.insert_operation({
            "name": name, "kind": kind, "state": "pending", "progress_percent": 0,
            "stage": "queued", "request": request, "created_ms": now, "updated_ms": now,
            "created_by": created_by,
        })
        self._cancel[name] = threading.Event()
        self._done[name] = threading.Event()
        self.pool.submit(self._run, name, work)
        return name

    def _run(self, name: str, work: Work) -> None:
        cancel = self._cancel[name]

        def progress(percent: int, stage: str) -> None:
            self.store.update_operation(name, state="running", progress_percent=percent,
                                        stage=stage, updated_ms=now_ms())

        def cancelled() -> bool:
            if cancel.is_set():
                return True
            row = self.store.get_operation(name)
            return bool(row and row.cancel_requested)

        try:
            if cancelled():
                raise Cancelled()
            result = work(progress, cancelled, name)
            self.store.update_operation(name, state="succeeded", progress_percent=100,
                                        stage="done", result=result, updated_ms=now_ms())
        except Cancelled:
            self.store.update_operation(name, state="cancelled", error_code=CODE_CANCELLED,
                                        error_message="cancelled", updated_ms=now_ms())
        except ServiceError as exc:
            violations = [list(v) for v in getattr(exc, "violations", [])
                          if isinstance(exc, InvalidArgument)]
            self.store.update_operation(name, state="failed", error_code=exc.code.value[0],
                                        error_message=exc.description,
                                        error_violations=violations or None, updated_ms=now_ms())
        except Exception as exc:
            log.exception("operation %s failed", name)
            self.store.update_operation(name, state="failed", error_code=CODE_INTERNAL,
                                        error_message=f"{type(exc).__name__}: {exc}"[:2000],
                                        updated_ms=now_ms())
        finally:
            self._cancel.pop(name, None)
            done = self._done.pop(name, None)
            if done:
                done.set()

    def get(self, name: str):
        row = self.store.get_operation(name)
        if row is None:
            raise NotFound("operation", name)
        return row

    def cancel(self, name: str):
        row = self.get(name)
        if row.state in TERMINAL:
            raise FailedPrecondition(f"{name} already finished ({row.state})",
                                     [("STATE", name, row.state)])
        self.store.update_operation(name, cancel_requested=True, updated_ms=now_ms())
        event = self._cancel.get(name)
        if event:
            event.set()
        return self.get(name)

    def wait(self, name: str, timeout: float | None = None) -> bool:
        """Blocks until an operation started here finishes (for tests and tools)."""
        event = self._done.get(name)
        return True if event is None else event.wait(timeout)

    def shutdown(self) -> None:
        for event in list(self._cancel.values()):
            event.set()
        self.pool.shutdown(wait=True, cancel_futures=True)
