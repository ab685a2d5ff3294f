"""Portrait insight: shares in segment and population, and TGI, on a known population."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.segment.catalog import CatalogCache
from services.segment.insight import build_insight
from services.segment.prepared import PreparedRules
from services.segment.text import parse_rule
from tests.segment.conftest import NOW, Population


def test_insight_shares_and_tgi(store_engine):
    pop = Population()
    # 10 users: 4 women aged 30..33 in the segment (tagged "beauty"), 6 others.
    for i in range(10):
        woman = i < 6
        uid = pop.user(f"u{i}", gender="f" if woman else "m", age=30 + i)
        if i < 4:
            pop.tag(uid, "beauty")
        if i % 2 == 0:
            pop.tag(uid, "sports")
        pop.traits(uid, rfm_group="champions" if i < 2 else "hibernating",
                   lifecycle_stage="active" if i < 5 else "dormant", frequency=i)
    pop.write(store_engine)
    catalog = CatalogCache(store_engine, 0).get()
    rule = parse_rule('has_tag("beauty")')
    with store_engine.connect() as connection:
        insight = build_insight(PreparedRules(store_engine.dialect), connection, rule, catalog,
                                NOW, ["gender", "age"], bounds={"age": [32, 35]}, top_tags=5)
    assert (insight.segment_size, insight.population_size) == (4, 10)
    by = {d.dimension: {b.value: b for b in d.buckets} for d in insight.distributions}
    women = by["attribute:gender"]["f"]
    assert (women.segment_count, women.population_count) == (4, 6)
    assert women.segment_share == 1.0 and women.population_share == 0.6
    assert women.tgi == pytest.approx(100 / 0.6)
    assert by["attribute:gender"]["m"].tgi == 0.0
    ages = by["attribute:age"]
    assert {k: (b.segment_count, b.population_count) for k, b in ages.items()} == {
        "< 32": (2, 2), "[32, 35)": (2, 3), ">= 35": (0, 5)}
    assert by["tags"]["beauty"].tgi == pytest.approx(250.0)
    assert (by["tags"]["sports"].segment_count, by["tags"]["sports"].population_count) == (2, 5)
    assert (by["rfm_group"]["champions"].segment_count, by["rfm_group"]["champions"].tgi) == (
        2, pytest.approx(250.0))
    assert by["lifecycle_stage"]["active"].segment_count == 4
    assert list(by["lifecycle_stage"]) == ["active", "dormant"]


def test_insight_default_buckets_and_errors(sqlite_engine):
    pop = Population()
    for i in range(20):
        pop.user(f"u{i}", age=float(i))
    pop.write(sqlite_engine)
    catalog = CatalogCache(sqlite_engine, 0).get()
    with sqlite_engine.connect() as connection:
        prepared = PreparedRules(sqlite_engine.dialect)
        insight = build_insight(prepared, connection, parse_rule("age >= 10"), catalog, NOW,
                                ["age"], top_tags=0, rfm=False, lifecycle=False)
        (dist,) = insight.distributions
        assert sum(b.population_count for b in dist.buckets) == 20
        assert sum(b.segment_count for b in dist.buckets) == 10
        assert len(dist.buckets) == 10
        with pytest.raises(InvalidArgument) as caught:
            build_insight(prepared, connection, parse_rule("age >= 10"), catalog, NOW,
                          ["age", "nope"])
        assert caught.value.violations[0][0] == "fields[1]"
