"""``random``: Ray Tune's random sampling of the space (the baseline)."""

from __future__ import annotations

from raysynth.search.searchers.base import SearcherSpec, register_searcher


@register_searcher("random")
def random_search(o: SearcherSpec):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    # not a Searcher: Tune's max_concurrent_trials does not reach it, so it limits itself
    return BasicVariantGenerator(random_state=o.seed, max_concurrent=o.concurrency)
