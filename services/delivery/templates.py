"""Sandboxed Jinja2 templates: validation at save time and bounded rendering per user."""

from __future__ import annotations

import dataclasses
import gc
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from services.common.errors import InvalidArgument

# Traits the profile service computes for every user (see the profile read-path contract).
TRAIT_NAMES = frozenset({
    "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score", "rfm_group",
    "lifecycle_stage",
})
# Names every template may use besides profile attributes and traits.
CONTEXT_NAMES = frozenset({"external_id", "plan", "touch"})

# Per-channel limits in characters. SMS: three concatenated 160-character segments; push:
# what the major mobile platforms display without truncation.
CHANNEL_LIMITS: dict[str, dict[str, int]] = {
    "sms": {"body": 480, "title": 0, "subject": 0},
    "push": {"title": 64, "body": 240, "subject": 0},
    "in_app": {"title": 64, "body": 2000, "subject": 0},
    "wechat": {"title": 64, "body": 1000, "subject": 0},
    "email": {"subject": 200, "body": 100_000, "title": 200},
    "webhook": {"title": 1000, "body": 100_000, "subject": 1000},
    "coupon": {"title": 200, "body": 1000, "subject": 0},
}
MAX_OUTPUT_CHARS = 100_000
# CPU seconds of the rendering thread, so a busy machine's preemption never counts.
MAX_RENDER_SECONDS = 0.1
MAX_LOOP_ITEMS = 10_000
MAX_BINOP_CHARS = 10_000


class RenderError(Exception):
    """A template could not be rendered within its bounds; the send is suppressed."""


class _Budget(threading.local):
    deadline: float = 0.0
    items: int = 0
    gc_started: float = 0.0


_budget = _Budget()


def _exempt_garbage_collection(phase: str, _info: dict) -> None:
    """Gives a render back the processor time a garbage collection took while it ran. The
    collector runs on whichever thread allocates when a threshold is crossed, so a full pass
    over a large heap (100 ms and more) could otherwise be charged to a two-word template and
    suppress its send as too slow."""
    if not _budget.deadline:
        return
    if phase == "start":
        _budget.gc_started = time.thread_time()
    elif _budget.gc_started:
        _budget.deadline += time.thread_time() - _budget.gc_started
        _budget.gc_started = 0.0


gc.callbacks.append(_exempt_garbage_collection)


def _check_deadline() -> None:
    if _budget.deadline and time.thread_time() > _budget.deadline:
        raise RenderError("template rendering exceeded its time budget")


def _bounded_range(*args: int) -> range:
    """``range`` that charges its length to the render's loop budget, so nested loops that
    would spin for minutes fail fast instead."""
    result = range(*args)
    _budget.items += len(result)
    if _budget.items > MAX_LOOP_ITEMS:
        raise RenderError("template loops exceed their iteration budget")
    _check_deadline()
    return result


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The Jinja2 sandbox with bounded loops, bounded string/number growth and a deadline."""

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self) -> None:
        super().__init__(autoescape=False, keep_trailing_newline=False)
        self.globals = {"range": _bounded_range}

    def call_binop(self, context, operator, left, right):
        _check_deadline()
        if operator == "**" and (abs(right) > 64 if isinstance(right, (int, float)) else True):
            raise SecurityError("exponent too large")
        if operator == "*":
            for a, b in ((left, right), (right, left)):
                if isinstance(a, (str, list, tuple)) and isinstance(b, int):
                    if len(a) * b > MAX_BINOP_CHARS:
                        raise SecurityError("repeated sequence too long")
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, (str, list)) and len(result) > MAX_OUTPUT_CHARS:
            raise SecurityError("value too long")
        return result

    def call(__self, __context, __obj, *args, **kwargs):
        _check_deadline()
        return super().call(__context, __obj, *args, **kwargs)


_env = BoundedSandbox()


def _escape_attempts(ast: nodes.Template) -> list[str]:
    """Attribute or item access to private names, or the ``attr`` filter: the ways out of a
    sandbox. Refused at save time even though the sandbox would also block them at render."""
    found = []
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
            found.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if isinstance(node.arg.value, str) and node.arg.value.startswith("_"):
                found.append(node.arg.value)
        elif isinstance(node, nodes.Filter) and node.name in {"attr", "map", "selectattr",
                                                              "rejectattr"}:
            for arg in node.args:
                if isinstance(arg, nodes.Const) and str(arg.value).startswith("_"):
                    found.append(str(arg.value))
            if node.name == "attr":
                found.append("attr")
    return found


@dataclasses.dataclass(frozen=True)
class CompiledContent:
    """A touch's templates compiled once and rendered many times."""

    channel: str
    templates: dict[str, Any]
    defaults: dict[str, str]
    # Every variable the templates read, so a batch fetches only those attributes.
    variables: frozenset[str] = frozenset()

    def render(self, variables: Mapping[str, Any]) -> dict[str, str]:
        """Renders every part for one user; raises RenderError past any bound."""
        context = {**self.defaults}
        context.update({k: v for k, v in variables.items() if v is not None})
        out = {}
        for part, template in self.templates.items():
            out[part] = _render_bounded(template, context)
            limit = CHANNEL_LIMITS.get(self.channel, {}).get(part, MAX_OUTPUT_CHARS)
            if limit and len(out[part]) > limit:
                raise RenderError(f"{part} is {len(out[part])} characters; {self.channel} "
                                  f"allows {limit}")
        return out


def _render_bounded(template, context: Mapping[str, Any]) -> str:
    _budget.deadline = time.thread_time() + MAX_RENDER_SECONDS
    _budget.items = 0
    pieces: list[str] = []
    size = 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise RenderError("rendered output too large")
            pieces.append(chunk)
            _check_deadline()
    except RenderError:
        raise
    except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        _budget.deadline = 0.0
    return "".join(pieces).strip()


def compile_content(
    channel: str,
    parts: Mapping[str, str],
    defaults: Mapping[str, str],
    known_names: Iterable[str],
    field_prefix: str,
) -> CompiledContent:
    """Validates and compiles a touch's templates; raises InvalidArgument naming the field.

    Checks syntax, sandbox escape attempts, variables that are neither profile attributes,
    traits, plan context nor declared defaults, and a trial render with the defaults.
    """
    known = set(known_names) | TRAIT_NAMES | CONTEXT_NAMES | set(defaults)
    violations: list[tuple[str, str]] = []
    compiled = {}
    used: set[str] = set()
    limits = CHANNEL_LIMITS.get(channel, {})
    for part, source in parts.items():
        if not source:
            continue
        field = f"{field_prefix}.{part}"
        if part in limits and limits[part] == 0:
            violations.append((field, f"the {channel} channel has no {part}"))
            continue
        try:
            ast = _env.parse(source)
        except TemplateSyntaxError as exc:
            violations.append((field, f"template syntax error at line {exc.lineno}: {exc.message}"))
            continue
        escapes = _escape_attempts(ast)
        if escapes:
            violations.append((field, f"sandbox escape attempt: access to {escapes[0]!r}"))
            continue
        from jinja2 import meta

        names = meta.find_undeclared_variables(ast)
        used |= names
        unknown = sorted(names - known - {"range"})
        if unknown:
            violations.append((field, f"unknown variable(s): {', '.join(unknown)}"))
            continue
        compiled[part] = _env.from_string(ast)
    if violations:
        raise InvalidArgument(violations=violations)
    content = CompiledContent(channel, compiled, dict(defaults), frozenset(used - {"range"}))
    try:
        content.render({"external_id": "preview", "plan": {}, "touch": {}})
    except RenderError as exc:
        raise InvalidArgument(f"{field_prefix}.body", f"trial render failed: {exc}") from exc
    return content
