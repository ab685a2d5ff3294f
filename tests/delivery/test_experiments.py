"""A/B/n splits, copy races, bandits, control groups and uplift intervals."""

from __future__ import annotations

import numpy as np
import pytest

from services.common.errors import InvalidArgument
from services.delivery import model
from services.delivery.experiments import (
    CONTROL,
    PENDING,
    ExperimentSpec,
    Variant,
    decide_race,
    in_control,
    prob_best,
    split_variants,
    thompson_choose,
    unit_hash,
    uplift,
    validate_experiment,
)

HOUR_MS = 3_600_000


def plan_spec(hours: int = 48) -> model.PlanSpec:
    touch = model.Touch("t1", "push", model.Content(title="Hi", body="Hello"),
                        model.Audience(segment="s"), model.Schedule())
    return model.PlanSpec("p", "convert", "", "order_paid", None, 1_000, 1_000 + hours * HOUR_MS,
                          10, "marketing", "me", (touch,))


def race_spec(**kw) -> ExperimentSpec:
    base = dict(mode="race", variants=tuple(Variant(f"v{i}", body=f"copy {i}") for i in range(4)),
                exploration_percent=10.0, window_s=3600, min_samples=1000, prob_best=0.95,
                mc_draws=20_000)
    base.update(kw)
    return ExperimentSpec(**base)


def test_assignment_is_deterministic_and_follows_the_fixed_splits():
    spec = ExperimentSpec(mode="ab", variants=(Variant("a", share=50), Variant("b", share=30),
                                               Variant("c", share=20)), control_percent=10)
    users = np.arange(1, 200_001)
    idx1, arm1 = split_variants(spec, users, 7, "t1")
    idx2, _ = split_variants(spec, users[::-1], 7, "t1")
    assert np.array_equal(idx1, idx2[::-1])  # the same user always lands in the same group
    other, _ = split_variants(spec, users, 8, "t1")
    assert (idx1 != other).mean() > 0.3  # another plan reshuffles
    control = idx1 == CONTROL
    assert abs(control.mean() - 0.10) < 0.005
    contacted = idx1[~control]
    shares = np.bincount(contacted, minlength=3) / len(contacted)
    assert np.allclose(shares, [0.5, 0.3, 0.2], atol=0.006)
    assert set(arm1[control].tolist()) == {4}
    # The control draw is independent of the variant draw: every variant loses ~10%.
    assert np.array_equal(control, in_control(users, 7, "t1", 10))


def test_unit_hash_is_uniform():
    u = unit_hash(np.arange(100_000), 3, "t", "variant")
    counts, _ = np.histogram(u, bins=10, range=(0, 1))
    assert counts.min() > 9_500 and counts.max() < 10_500
    assert 0 <= u.min() and u.max() < 1


def test_race_slices_exploration_equally_and_holds_the_rest():
    spec = race_spec()
    idx, arm = split_variants(spec, np.arange(1, 100_001), 5, "t1")
    explore = arm == 1
    assert abs(explore.mean() - 0.10) < 0.004
    per_variant = np.bincount(idx[explore], minlength=4) / len(idx)
    assert np.allclose(per_variant, 0.025, atol=0.002)
    assert (idx[arm == 2] == PENDING).all()
    idx_won, _ = split_variants(spec, np.arange(1, 100_001), 5, "t1", winner=2)
    assert (idx_won[arm == 2] == 2).all() and np.array_equal(idx_won[explore], idx[explore])


def run_race(seed: int, rates=(0.02, 0.03, 0.05, 0.03), audience: int = 100_000) -> int:
    """One simulated race: hash-assigned exploration users receive the copy, click with the
    variant's true rate, and the rule is applied at four looks during the window."""
    spec = race_spec(seed=seed)
    users = np.arange(1, audience + 1)
    idx, arm = split_variants(spec, users, seed + 1, "t1")
    explore = np.flatnonzero(arm == 1)
    rng = np.random.default_rng(seed)
    order = rng.permutation(explore)  # the order in which users are reached
    clicks = rng.random(len(order)) < np.asarray(rates)[idx[order]]
    variants = idx[order]
    looks = 4
    for look in range(1, looks + 1):
        upto = len(order) * look // looks
        trials = np.bincount(variants[:upto], minlength=4)
        hits = np.bincount(variants[:upto][clicks[:upto]], minlength=4)
        now = look * spec.window_s * 1000 // looks
        decision = decide_race(spec, hits, trials, 0, now)
        if decision.winner is not None:
            return decision.winner
    raise AssertionError("the deadline must always produce a decision")


def test_race_picks_the_best_copy_in_at_least_95_of_100_runs():
    winners = [run_race(seed) for seed in range(100)]
    assert winners.count(2) >= 95, np.bincount(winners, minlength=4)


def test_race_rule_waits_for_min_samples_then_falls_back_at_deadline():
    spec = race_spec(min_samples=500)
    # A clear leader but too few samples: no decision inside the window.
    d = decide_race(spec, [0, 0, 40, 0], [100, 100, 100, 100], 0, 1000)
    assert d.winner is None and d.prob_best[2] > 0.99
    # Enough samples and a clear leader: significant.
    d = decide_race(spec, [10, 15, 60, 15], [600, 600, 600, 600], 0, 1000)
    assert (d.winner, d.rule) == (2, "significant")
    # A near tie at the deadline: the highest posterior mean wins, or the first variant.
    d = decide_race(spec, [30, 31, 29, 30], [1000, 1000, 1000, 1000], 0, 3_600_000)
    assert (d.winner, d.rule) == (1, "deadline_fallback")
    d = decide_race(race_spec(fallback="first_variant"), [30, 31, 29, 30], [1000] * 4, 0,
                    3_600_000)
    assert (d.winner, d.rule) == (0, "deadline_fallback")


def test_prob_best_is_reproducible_and_sums_to_one():
    a = prob_best([10, 20, 30], [500, 500, 500], 5000, seed=3)
    b = prob_best([10, 20, 30], [500, 500, 500], 5000, seed=3)
    assert np.array_equal(a, b) and abs(a.sum() - 1) < 1e-9 and a.argmax() == 2


def test_thompson_bandit_moves_traffic_to_the_best_arm():
    rates = np.array([0.02, 0.03, 0.05, 0.03])
    rng = np.random.default_rng(11)
    s, n = np.zeros(4, int), np.zeros(4, int)
    last = None
    for _ in range(40):
        picks = thompson_choose(s, n, 1000, rng)
        clicks = rng.random(1000) < rates[picks]
        n += np.bincount(picks, minlength=4)
        s += np.bincount(picks[clicks], minlength=4)
        last = np.bincount(picks, minlength=4) / 1000
    assert last[2] > 0.6, last
    assert n[2] == n.max()


def test_uplift_interval_covers_the_simulated_truth():
    rng = np.random.default_rng(5)
    p_contacted, p_control, n_t, n_c = 0.06, 0.04, 20_000, 2_000
    covered = 0
    runs = 400
    for _ in range(runs):
        conv_t = int(rng.binomial(n_t, p_contacted))
        conv_c = int(rng.binomial(n_c, p_control))
        u = uplift(conv_t, n_t, conv_c, n_c)
        assert u.low < u.uplift < u.high
        covered += u.low <= p_contacted - p_control <= u.high
    assert 0.92 <= covered / runs <= 0.98  # a 95% interval: about 95% of runs cover the truth


@pytest.mark.parametrize("counts,difference,low,high", [
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10 (hybrid score),
    # examples (a) to (h), including the boundary cases with zero or all successes.
    ((56, 70, 48, 80), 0.2000, 0.0524, 0.3339),
    ((9, 10, 3, 10), 0.6000, 0.1705, 0.8090),
    ((6, 7, 2, 7), 0.5714, 0.0582, 0.8062),
    ((5, 56, 0, 29), 0.0893, -0.0381, 0.1926),
    ((0, 10, 0, 20), 0.0, -0.1611, 0.2775),
    ((0, 10, 0, 10), 0.0, -0.2775, 0.2775),
    ((10, 10, 0, 20), 1.0, 0.6791, 1.0),
    ((10, 10, 0, 10), 1.0, 0.6075, 1.0),
])
def test_uplift_newcombe_known_values(counts, difference, low, high):
    u = uplift(*counts)
    assert u.uplift == pytest.approx(difference, abs=5e-5)
    assert u.low == pytest.approx(low, abs=5e-5) and u.high == pytest.approx(high, abs=5e-5)
    # The interval always holds its point estimate (it may touch it at the 0/1 boundary).
    assert u.low <= u.uplift <= u.high


@pytest.mark.parametrize("spec,field", [
    (race_spec(variants=(Variant("only"),)), "experiment.variants"),
    (ExperimentSpec(mode="ab", variants=(Variant("a", share=60), Variant("b", share=30))),
     "experiment.variants.share"),
    (race_spec(window_s=72 * 3600), "experiment.window"),
    (race_spec(control_percent=80), "experiment.control_percent"),
    (race_spec(variants=(Variant("a"), Variant("a"))), "experiment.variants[1].variant_id"),
    (race_spec(mode="coin"), "experiment.mode"),
])
def test_bad_experiments_are_refused_naming_the_field(spec, field):
    errors = validate_experiment(spec, plan_spec(hours=48), "t1")
    assert field in [f for f, _ in errors], errors
    assert validate_experiment(race_spec(), plan_spec(hours=48), "t1") == []


def test_save_refuses_bad_input_with_invalid_argument(tmp_path):
    from services.delivery.experiments import Experiments
    from services.delivery.store import Store, open_engine

    engine = open_engine(f"sqlite:///{tmp_path}/d.db")
    store = Store(engine)
    plan = store.create_plan(plan_spec(hours=2), "maker")
    exps = Experiments(engine)
    with pytest.raises(InvalidArgument) as err:
        exps.save(plan, "t1", race_spec(window_s=3 * 3600))
    assert ("experiment.window", "is longer than the plan (from start_time to end_time)") in \
        err.value.violations
    saved = exps.save(plan, "t1", race_spec())
    assert saved.state == "open" and saved.spec.variant_ids == ["v0", "v1", "v2", "v3"]
