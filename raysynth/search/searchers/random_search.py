"""``random``: Ray Tune's random sampling of the space (the baseline)."""

from __future__ import annotations

from raysynth.search.searchers.base import SearcherOptions, register_searcher


@register_searcher("random")
def random_search(o: SearcherOptions):
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=o.seed)
