"""``asha``: asynchronous successive halving over epochs (stops weak trials early)."""

from raysynth.search.schedulers.base import register_scheduler


@register_scheduler("asha")
def asha(config):
    from ray.tune.schedulers import ASHAScheduler

    s = config.search.scheduler
    return ASHAScheduler(
        time_attr="epoch",
        max_t=config.train.epochs,
        grace_period=min(s.grace_period, config.train.epochs),
        reduction_factor=s.reduction_factor,
    )
