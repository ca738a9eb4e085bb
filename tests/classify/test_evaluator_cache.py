"""The classifier's evaluator caches: one evaluator per (catalog, policy) object pair, bounded."""

from __future__ import annotations

from dataclasses import replace

from processors.classify.classifier import (
    EvaluatorCache,
    default_catalog,
    default_policy,
    default_products,
    evaluator_for,
    product_evaluator_for,
)
from processors.classify.policy import ClassificationPolicy


def test_the_same_pair_gets_the_same_evaluator_and_another_policy_a_new_one() -> None:
    catalog, policy = default_catalog(), default_policy()
    first = evaluator_for(catalog, policy)
    assert evaluator_for(catalog, policy) is first
    assert evaluator_for(catalog, replace(policy)) is not first
    products = default_products()
    assert product_evaluator_for(products, policy) is product_evaluator_for(products, policy)


def test_the_cache_is_bounded_and_drops_the_oldest_pair() -> None:
    built: list[tuple[str, ClassificationPolicy]] = []

    def build(source: str, policy: ClassificationPolicy) -> object:
        built.append((source, policy))
        return object()

    cache: EvaluatorCache[str, object] = EvaluatorCache(build, size=2)
    policy = default_policy()
    sources = ["a", "b", "c"]
    first = cache.get(sources[0], policy)
    cache.get(sources[1], policy)
    assert cache.get(sources[0], policy) is first and len(built) == 2
    cache.get(sources[2], policy)
    assert cache.get(sources[0], policy) is not first
    assert len(built) == 4
