"""A/B/n splits, copy races, Thompson-sampling bandits, control groups and uplift for touches.

Assignment is a pure function of (user, plan, touch) through a 64-bit mix of the user id and a
key derived from the plan, so every replica and every rerun puts a user in the same group.

Copy race rule (documented contract):

1. The exploration slice (``exploration_percent`` of the contacted audience) is split into
   equal parts, one per variant; the rest of the audience waits for the winner.
2. A variant's rate is users with the metric (a click, or a conversion) over users sent.
3. No decision before every variant has ``min_samples`` sends.
4. After that, the probability that each variant has the best true rate is estimated by Monte
   Carlo from Beta(1 + successes, 1 + failures) posteriors (``mc_draws`` draws, a generator
   seeded from the spec's seed and the counts, so the same counts always give the same answer).
   The first variant whose probability reaches ``prob_best`` (0.95 by default) wins
   ("significant").
5. When the observation window ends without a winner, the fallback applies
   ("deadline_fallback"): ``fallback_variant`` when one is named, else ``best_mean`` takes the
   variant with the highest posterior mean, ``first_variant`` the first variant (the control
   copy).

Bandit mode draws one sample per variant from the same posteriors for each new user and
gives the user the variant with the highest draw (Thompson sampling), so long-running
triggered touches keep moving traffic to the variant that works.

Uplift is the conversion rate of contacted users minus that of the control group, with the
Newcombe hybrid score interval (two Wilson intervals), which keeps its coverage at the small
rates marketing sees where the Wald interval does not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Engine

from services.common.errors import InvalidArgument, NotFound
from services.delivery import model
from services.delivery.store import dialect_insert
from services.delivery.tables import sends
from services.delivery.tables_effects import assignments, experiments, outcomes

MODES = ("ab", "race", "bandit")
METRICS = ("click", "conversion")
FALLBACKS = ("best_mean", "first_variant")
MAX_CONTROL_PERCENT = 50.0
METRIC_KIND = {"click": "clicked", "conversion": "converted"}

# Arms a user can land in.
ARM_SPLIT, ARM_EXPLORE, ARM_EXPLOIT, ARM_BANDIT, ARM_CONTROL = (
    "split", "explore", "exploit", "bandit", "control")
# Variant indexes that are not a variant.
CONTROL, PENDING = -1, -2


@dataclasses.dataclass(frozen=True)
class Variant:
    """One version of a touch; empty fields keep the touch's own content and timing."""

    variant_id: str
    title: str = ""
    body: str = ""
    subject: str = ""
    channel: str = ""
    send_delay_s: int = 0
    share: float = 0.0  # percent of the contacted audience, A/B mode only


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    """How a touch's audience is split; see the module docstring for the race rule."""

    mode: str
    variants: tuple[Variant, ...]
    control_percent: float = 0.0
    metric: str = "click"
    exploration_percent: float = 10.0
    window_s: int = 3600
    min_samples: int = 1000
    prob_best: float = 0.95
    fallback: str = "best_mean"
    fallback_variant: str = ""
    deadline_s: int = 0  # when the fallback applies; 0 for the end of ``window_s``
    mc_draws: int = 20_000
    seed: int = 0

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ExperimentSpec:
        fields = {k: v for k, v in data.items() if k != "variants"}
        return ExperimentSpec(variants=tuple(Variant(**v) for v in data.get("variants", ())),
                              **fields)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def variant_ids(self) -> list[str]:
        return [v.variant_id for v in self.variants]


def validate_experiment(spec: ExperimentSpec, plan: model.PlanSpec, touch_id: str,
                        prefix: str = "experiment") -> list[tuple[str, str]]:
    """Save-time checks; returns field violations."""
    errors: list[tuple[str, str]] = []
    if spec.mode not in MODES:
        return [(f"{prefix}.mode", f"must be one of {', '.join(MODES)}")]
    if touch_id not in {t.touch_id for t in plan.touches}:
        errors.append((f"{prefix}.touch_id", f"the plan has no touch {touch_id!r}"))
    if len(spec.variants) < 2:
        errors.append((f"{prefix}.variants", f"a {spec.mode} test needs at least two variants"))
    seen: set[str] = set()
    for i, v in enumerate(spec.variants):
        if not v.variant_id or not v.variant_id.replace("-", "").replace("_", "").isalnum():
            errors.append((f"{prefix}.variants[{i}].variant_id",
                           "must be letters, digits, '-' or '_'"))
        elif v.variant_id in seen:
            errors.append((f"{prefix}.variants[{i}].variant_id",
                           f"duplicate variant id {v.variant_id!r}"))
        seen.add(v.variant_id)
        if v.channel and v.channel not in model.CHANNELS:
            errors.append((f"{prefix}.variants[{i}].channel",
                           f"must be one of {', '.join(model.CHANNELS)}"))
        if v.send_delay_s < 0:
            errors.append((f"{prefix}.variants[{i}].send_delay_s", "must not be negative"))
        if v.share < 0:
            errors.append((f"{prefix}.variants[{i}].share", "must not be negative"))
    if spec.mode == "ab" and spec.variants:
        total = sum(v.share for v in spec.variants)
        if abs(total - 100.0) > 1e-6:
            errors.append((f"{prefix}.variants.share",
                           f"shares add up to {total:g}, they must add up to 100"))
    if not 0 <= spec.control_percent <= MAX_CONTROL_PERCENT:
        errors.append((f"{prefix}.control_percent",
                       f"must be between 0 and {MAX_CONTROL_PERCENT:g}"))
    if spec.metric not in METRICS:
        errors.append((f"{prefix}.metric", f"must be one of {', '.join(METRICS)}"))
    if spec.mode == "race":
        if not 0 < spec.exploration_percent <= 100:
            errors.append((f"{prefix}.exploration_percent", "must be above 0 and at most 100"))
        if spec.window_s <= 0:
            errors.append((f"{prefix}.window", "must be positive"))
        elif spec.window_s * 1000 > plan.end_ms - plan.start_ms:
            errors.append((f"{prefix}.window",
                           "is longer than the plan (from start_time to end_time)"))
        if spec.deadline_s and spec.deadline_s < spec.window_s:
            errors.append((f"{prefix}.deadline_seconds", "must not be before the window ends"))
        elif spec.deadline_s * 1000 > plan.end_ms - plan.start_ms:
            errors.append((f"{prefix}.deadline_seconds", "is longer than the plan"))
        if spec.min_samples < 1:
            errors.append((f"{prefix}.min_samples", "must be at least 1"))
        if not 0.5 < spec.prob_best < 1:
            errors.append((f"{prefix}.prob_best", "must be above 0.5 and below 1"))
        if spec.fallback not in FALLBACKS:
            errors.append((f"{prefix}.fallback", f"must be one of {', '.join(FALLBACKS)}"))
        if spec.fallback_variant and spec.fallback_variant not in seen:
            errors.append((f"{prefix}.fallback_variant_id", "is not one of the variants"))
    if spec.mode in ("race", "bandit") and not 100 <= spec.mc_draws <= 1_000_000:
        errors.append((f"{prefix}.mc_draws", "must be between 100 and 1000000"))
    return errors


# Deterministic assignment ------------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _key(plan_id: int, touch_id: str, salt: str) -> np.uint64:
    digest = hashlib.sha256(f"{plan_id}\x1f{touch_id}\x1f{salt}".encode()).digest()
    return np.uint64(int.from_bytes(digest[:8], "big"))


def unit_hash(user_ids: Sequence[int] | np.ndarray, plan_id: int, touch_id: str,
              salt: str) -> np.ndarray:
    """A uniform number in [0, 1) per user, fixed for (user, plan, touch, salt).

    SplitMix64's finalizer over the user id mixed with a SHA-256-derived key: vectorised, so a
    million users take milliseconds, and every bit of the id affects every bit of the result.
    """
    x = np.asarray(user_ids, dtype=np.uint64).reshape(-1) ^ _key(plan_id, touch_id, salt)
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def in_control(user_ids, plan_id: int, touch_id: str, control_percent: float) -> np.ndarray:
    """True for users withheld as the control group (a fixed share, by hash)."""
    return unit_hash(user_ids, plan_id, touch_id, "control") < control_percent / 100.0


def split_variants(spec: ExperimentSpec, user_ids, plan_id: int, touch_id: str,
                   winner: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(variant index, arm code) per user for A/B and race modes, control group included.

    Arm codes: 0 split, 1 explore, 2 exploit, 4 control. Exploit users get the winner, or
    ``PENDING`` while the race is open.
    """
    users = np.asarray(user_ids, dtype=np.uint64).reshape(-1)
    u = unit_hash(users, plan_id, touch_id, "variant")
    k = len(spec.variants)
    if spec.mode == "ab":
        edges = np.cumsum([v.share for v in spec.variants]) / 100.0
        idx = np.minimum(np.searchsorted(edges, u, side="right"), k - 1)
        arm = np.zeros(len(users), dtype=np.int8)
    elif spec.mode == "race":
        slice_ = spec.exploration_percent / 100.0
        explore = u < slice_
        idx = np.where(explore, np.minimum((u / (slice_ / k)).astype(np.int64), k - 1),
                       PENDING if winner is None else winner)
        arm = np.where(explore, 1, 2).astype(np.int8)
    else:
        raise ValueError("bandit assignment draws from the posteriors: use thompson_choose")
    control = in_control(users, plan_id, touch_id, spec.control_percent)
    idx = np.where(control, CONTROL, idx).astype(np.int64)
    arm = np.where(control, 4, arm).astype(np.int8)
    return idx, arm


ARM_NAMES = {0: ARM_SPLIT, 1: ARM_EXPLORE, 2: ARM_EXPLOIT, 3: ARM_BANDIT, 4: ARM_CONTROL}


# Statistics --------------------------------------------------------------------------------


def _rng(seed: int, successes, trials) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF,
                                  *(int(s) for s in successes), *(int(n) for n in trials)])


def prob_best(successes: Sequence[int], trials: Sequence[int], draws: int = 20_000,
              seed: int = 0) -> np.ndarray:
    """P(variant i has the highest true rate) under Beta(1+s, 1+n-s) posteriors (Monte Carlo)."""
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    samples = _rng(seed, successes, trials).beta(1 + s, 1 + n - s, size=(draws, len(s)))
    return np.bincount(samples.argmax(axis=1), minlength=len(s)) / draws


@dataclasses.dataclass(frozen=True)
class RaceDecision:
    winner: int | None
    rule: str  # "significant", "deadline_fallback" or "" (no decision yet)
    prob_best: tuple[float, ...]


def decide_race(spec: ExperimentSpec, successes: Sequence[int], trials: Sequence[int],
                started_ms: int, now_ms: int) -> RaceDecision:
    """Applies the race rule of this module's docstring to the counts so far."""
    s = np.asarray(successes, dtype=np.int64)
    n = np.asarray(trials, dtype=np.int64)
    probs = prob_best(s, n, spec.mc_draws, spec.seed)
    if n.min() >= spec.min_samples and probs.max() >= spec.prob_best:
        return RaceDecision(int(probs.argmax()), "significant", tuple(probs.tolist()))
    if now_ms >= started_ms + (spec.deadline_s or spec.window_s) * 1000:
        if spec.fallback_variant in spec.variant_ids:
            winner = spec.variant_ids.index(spec.fallback_variant)
        elif spec.fallback == "first_variant":
            winner = 0
        else:
            winner = int(((1 + s) / (2 + n)).argmax())
        return RaceDecision(winner, "deadline_fallback", tuple(probs.tolist()))
    return RaceDecision(None, "", tuple(probs.tolist()))


def thompson_choose(successes: Sequence[int], trials: Sequence[int], n_users: int,
                    rng: np.random.Generator) -> np.ndarray:
    """One Thompson-sampling draw per user: the variant whose posterior sample is highest."""
    s = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    return rng.beta(1 + s, 1 + n - s, size=(n_users, len(s))).argmax(axis=1)


@dataclasses.dataclass(frozen=True)
class Uplift:
    """Contacted minus control conversion rate, with its confidence interval."""

    contacted: int
    contacted_converted: int
    control: int
    control_converted: int
    rate_contacted: float
    rate_control: float
    uplift: float
    low: float
    high: float
    confidence: float
    method: str = "newcombe_hybrid_score"


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def uplift(contacted_converted: int, contacted: int, control_converted: int, control: int,
           confidence: float = 0.95) -> Uplift:
    """Newcombe's hybrid score interval (method 10) for a difference of two proportions."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p1 = contacted_converted / contacted if contacted else 0.0
    p2 = control_converted / control if control else 0.0
    l1, u1 = wilson(contacted_converted, contacted, z)
    l2, u2 = wilson(control_converted, control, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Uplift(contacted, contacted_converted, control, control_converted, p1, p2, d,
                  low, high, confidence)


# Stored experiments ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Experiment:
    plan_id: int
    touch_id: str
    spec: ExperimentSpec
    state: str
    winner: str | None
    decision_rule: str | None
    prob_best: float | None
    started_ms: int | None
    decided_ms: int | None

    @property
    def winner_index(self) -> int | None:
        return None if self.winner is None else self.spec.variant_ids.index(self.winner)


@dataclasses.dataclass(frozen=True)
class Assigned:
    """The group of one user: a variant id ('' for control, None while the race is open)."""

    user_id: int
    variant: str | None
    arm: str


class Experiments:
    """Experiments of touches in the delivery database: save, assign, count, decide."""

    def __init__(self, engine: Engine, clock=None):
        self.engine = engine
        self.clock = clock or (lambda: int(time.time() * 1000))

    def save(self, plan: model.Plan, touch_id: str, spec: ExperimentSpec) -> Experiment:
        """Validates and stores (or replaces, before it starts) a touch's experiment."""
        errors = validate_experiment(spec, plan.spec, touch_id)
        if errors:
            raise InvalidArgument(violations=errors)
        ts = self.clock()
        row = {"plan_id": plan.id, "touch_id": touch_id, "mode": spec.mode,
               "spec": spec.to_dict(), "state": "open", "updated_ms": ts}
        with self.engine.begin() as conn:
            stmt = dialect_insert(conn, experiments).values(**row)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=[experiments.c.plan_id, experiments.c.touch_id],
                set_={"mode": spec.mode, "spec": spec.to_dict(), "updated_ms": ts},
                where=experiments.c.started_ms.is_(None),
            ))
        return self.get(plan.id, touch_id)

    def get(self, plan_id: int, touch_id: str) -> Experiment:
        found = self.find(plan_id, touch_id)
        if found is None:
            raise NotFound("experiment", f"plans/{plan_id}/touches/{touch_id}/experiment")
        return found

    def find(self, plan_id: int, touch_id: str) -> Experiment | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(experiments).where(
                experiments.c.plan_id == plan_id, experiments.c.touch_id == touch_id)).first()
        if row is None:
            return None
        return Experiment(row.plan_id, row.touch_id, ExperimentSpec.from_dict(row.spec),
                          row.state, row.winner, row.decision_rule, row.prob_best,
                          row.started_ms, row.decided_ms)

    def _start(self, exp: Experiment, now: int) -> Experiment:
        if exp.started_ms is None:
            with self.engine.begin() as conn:
                conn.execute(update(experiments).where(
                    experiments.c.plan_id == exp.plan_id, experiments.c.touch_id == exp.touch_id,
                    experiments.c.started_ms.is_(None)).values(started_ms=now, updated_ms=now))
            exp = self.get(exp.plan_id, exp.touch_id)
        return exp

    def assign(self, plan_id: int, touch_id: str, user_ids: Sequence[int],
               pending_to_leader: bool = False) -> dict[int, Assigned]:
        """Groups of many users: earlier assignments are kept, new ones computed in one
        vectorised pass and stored in one insert. Exploit users of an open race are returned
        with ``variant=None`` and not stored: they wait for the winner. Triggered touches
        cannot wait (the moment passes), so with ``pending_to_leader`` they get the variant
        with the highest posterior mean so far."""
        exp = self.get(plan_id, touch_id)
        now = self.clock()
        exp = self._start(exp, now)
        users = list(dict.fromkeys(int(u) for u in user_ids))
        with self.engine.connect() as conn:
            known = {r.user_id: Assigned(r.user_id, r.variant, r.arm) for r in conn.execute(
                select(assignments.c.user_id, assignments.c.variant, assignments.c.arm).where(
                    assignments.c.plan_id == plan_id, assignments.c.touch_id == touch_id,
                    assignments.c.user_id.in_(users)))}
        fresh = [u for u in users if u not in known]
        out = dict(known)
        if not fresh:
            return out
        ids = exp.spec.variant_ids
        if exp.spec.mode == "bandit":
            control = in_control(fresh, plan_id, touch_id, exp.spec.control_percent)
            s, n = self.counts(plan_id, touch_id)
            rng = np.random.default_rng([exp.spec.seed, plan_id, now & 0xFFFFFFFF, len(fresh)])
            picks = thompson_choose([s[v] for v in ids], [n[v] for v in ids],
                                    len(fresh), rng)
            idx = np.where(control, CONTROL, picks)
            arms = np.where(control, 4, 3)
        else:
            idx, arms = split_variants(exp.spec, fresh, plan_id, touch_id, exp.winner_index)
            if pending_to_leader and (idx == PENDING).any():
                s, n = self.counts(plan_id, touch_id)
                means = [(1 + s[v]) / (2 + n[v]) for v in ids]
                idx = np.where(idx == PENDING, int(np.argmax(means)), idx)
        rows = []
        for uid, i, a in zip(fresh, idx.tolist(), arms.tolist()):
            if i == PENDING:
                out[uid] = Assigned(uid, None, ARM_NAMES[a])
                continue
            variant = "" if i == CONTROL else ids[i]
            rows.append({"plan_id": plan_id, "touch_id": touch_id, "user_id": uid,
                         "variant": variant, "arm": ARM_NAMES[a], "assigned_ms": now})
        if rows:
            with self.engine.begin() as conn:
                conn.execute(dialect_insert(conn, assignments).on_conflict_do_nothing(), rows)
                # A concurrent replica may have assigned some first: its choice stands.
                stored = conn.execute(
                    select(assignments.c.user_id, assignments.c.variant, assignments.c.arm)
                    .where(assignments.c.plan_id == plan_id, assignments.c.touch_id == touch_id,
                           assignments.c.user_id.in_([r["user_id"] for r in rows])))
                out.update({r.user_id: Assigned(r.user_id, r.variant, r.arm) for r in stored})
        return out

    def assign_holdout(self, plan_id: int, touch_id: str, user_ids: Sequence[int],
                       control_percent: float) -> dict[int, Assigned]:
        """Groups of a touch without an experiment but with a control group: held back by
        hash (arm ``control``) or contacted with the touch's own copy (arm ``split``, variant
        ""). Stored like experiment assignments, so uplift and attribution read one table."""
        users = list(dict.fromkeys(int(u) for u in user_ids))
        if not users:
            return {}
        now = self.clock()
        control = in_control(users, plan_id, touch_id, control_percent)
        rows = [{"plan_id": plan_id, "touch_id": touch_id, "user_id": uid, "variant": "",
                 "arm": ARM_CONTROL if held else ARM_SPLIT, "assigned_ms": now}
                for uid, held in zip(users, control.tolist())]
        with self.engine.begin() as conn:
            conn.execute(dialect_insert(conn, assignments).on_conflict_do_nothing(), rows)
            stored = conn.execute(
                select(assignments.c.user_id, assignments.c.variant, assignments.c.arm)
                .where(assignments.c.plan_id == plan_id, assignments.c.touch_id == touch_id,
                       assignments.c.user_id.in_(users)))
            return {r.user_id: Assigned(r.user_id, r.variant, r.arm) for r in stored}

    def open_races(self, plan_ids: Sequence[int]) -> list[tuple[int, str]]:
        """(plan, touch) of the undecided races of these plans."""
        if not plan_ids:
            return []
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(
                select(experiments.c.plan_id, experiments.c.touch_id).where(
                    experiments.c.plan_id.in_(list(plan_ids)), experiments.c.mode == "race",
                    experiments.c.state == "open"))]

    def forget(self, plan_id: int, keep: Sequence[str] = ()) -> None:
        """Drops the experiments of a plan's touches not in ``keep`` that never started."""
        with self.engine.begin() as conn:
            conn.execute(experiments.delete().where(
                experiments.c.plan_id == plan_id, experiments.c.started_ms.is_(None),
                experiments.c.touch_id.not_in(list(keep))))

    def counts(self, plan_id: int, touch_id: str) -> tuple[dict[str, int], dict[str, int]]:
        """(successes, trials) by variant: users sent, and of those users with the metric's
        outcome, counted in SQL (GROUP BY variant)."""
        exp = self.get(plan_id, touch_id)
        kind = METRIC_KIND[exp.spec.metric]
        a = assignments
        sent_q = (
            select(a.c.variant, func.count(func.distinct(a.c.user_id)))
            .select_from(a.join(sends, and_(sends.c.plan_id == a.c.plan_id,
                                            sends.c.touch_id == a.c.touch_id,
                                            sends.c.user_id == a.c.user_id)))
            .where(a.c.plan_id == plan_id, a.c.touch_id == touch_id, a.c.variant != "",
                   sends.c.status == "sent")
            .group_by(a.c.variant)
        )
        hit_q = (
            select(outcomes.c.variant, func.count(func.distinct(outcomes.c.user_id)))
            .where(outcomes.c.plan_id == plan_id, outcomes.c.touch_id == touch_id,
                   outcomes.c.kind == kind, outcomes.c.variant != "",
                   outcomes.c.arm != ARM_CONTROL)
            .group_by(outcomes.c.variant)
        )
        with self.engine.connect() as conn:
            trials = dict(conn.execute(sent_q).all())
            hits = dict(conn.execute(hit_q).all())
        ids = exp.spec.variant_ids
        return ({v: int(hits.get(v, 0)) for v in ids}, {v: int(trials.get(v, 0)) for v in ids})

    def evaluate_race(self, plan_id: int, touch_id: str) -> Experiment:
        """Checks an open race against the rule and stores the decision once (the UPDATE only
        matches while the race is open, so concurrent evaluators agree on one winner)."""
        exp = self.get(plan_id, touch_id)
        if exp.spec.mode != "race" or exp.state == "decided":
            return exp
        now = self.clock()
        exp = self._start(exp, now)
        s, n = self.counts(plan_id, touch_id)
        ids = exp.spec.variant_ids
        decision = decide_race(exp.spec, [s[v] for v in ids], [n[v] for v in ids],
                               exp.started_ms, now)
        if decision.winner is None:
            return exp
        with self.engine.begin() as conn:
            conn.execute(update(experiments).where(
                experiments.c.plan_id == plan_id, experiments.c.touch_id == touch_id,
                experiments.c.state == "open").values(
                state="decided", winner=ids[decision.winner], decision_rule=decision.rule,
                prob_best=decision.prob_best[decision.winner], decided_ms=now, updated_ms=now))
        return self.get(plan_id, touch_id)

    def uplift(self, plan_id: int, touch_id: str | None = None, confidence: float = 0.95
               ) -> dict[str, Uplift]:
        """Uplift against control per variant and for the whole plan (key ``""``).

        Contacted users are those sent a message of the touch; control users are those held
        back. Both count a conversion when attribution recorded one (``outcomes``)."""
        a = assignments
        where = [a.c.plan_id == plan_id]
        if touch_id is not None:
            where.append(a.c.touch_id == touch_id)
        contacted_q = (
            select(a.c.variant, func.count(func.distinct(a.c.user_id)))
            .select_from(a.join(sends, and_(sends.c.plan_id == a.c.plan_id,
                                            sends.c.touch_id == a.c.touch_id,
                                            sends.c.user_id == a.c.user_id)))
            .where(*where, a.c.arm != ARM_CONTROL, sends.c.status == "sent")
            .group_by(a.c.variant)
        )
        control_q = select(func.count(func.distinct(a.c.user_id))).where(
            *where, a.c.arm == ARM_CONTROL)
        o_where = [outcomes.c.plan_id == plan_id, outcomes.c.kind == "converted"]
        if touch_id is not None:
            o_where.append(outcomes.c.touch_id == touch_id)
        conv_q = (
            select(outcomes.c.variant, outcomes.c.arm,
                   func.count(func.distinct(outcomes.c.user_id)))
            .where(*o_where).group_by(outcomes.c.variant, outcomes.c.arm)
        )
        with self.engine.connect() as conn:
            contacted = dict(conn.execute(contacted_q).all())
            n_control = int(conn.execute(control_q).scalar_one())
            conv = conn.execute(conv_q).all()
        control_conv = sum(c for _, arm, c in conv if arm == ARM_CONTROL)
        conv_by_variant: dict[str, int] = {}
        for variant, arm, c in conv:
            if arm != ARM_CONTROL:
                conv_by_variant[variant] = conv_by_variant.get(variant, 0) + c
        out = {v: uplift(conv_by_variant.get(v, 0), n, control_conv, n_control, confidence)
               for v, n in contacted.items()}
        out[""] = uplift(sum(conv_by_variant.values()), sum(contacted.values()),
                         control_conv, n_control, confidence)
        return out

    def variant_touch(self, plan_id: int, touch: model.Touch, variant_id: str) -> model.Touch:
        """The touch as one variant sends it (its copy and channel over the touch's own)."""
        exp = self.find(plan_id, touch.touch_id)
        if exp is None or not variant_id:
            return touch
        return self.apply_variant(touch, exp.spec.variants[exp.spec.variant_ids.index(variant_id)])

    @staticmethod
    def apply_variant(touch: model.Touch, variant: Variant) -> model.Touch:
        """The touch with a variant's copy and channel over its own."""
        content = dataclasses.replace(
            touch.content, title=variant.title or touch.content.title,
            body=variant.body or touch.content.body,
            subject=variant.subject or touch.content.subject)
        return dataclasses.replace(touch, content=content,
                                   channel=variant.channel or touch.channel)
