"""``fifo``: every trial runs all its epochs."""

from raysynth.search.schedulers.base import register_scheduler


@register_scheduler("fifo")
def fifo(config):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()
