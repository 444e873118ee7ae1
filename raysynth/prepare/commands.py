"""The preparation steps as commands (``raysynth pretrain | generate |
finetune-generator``): each one library call the CLI makes, printing what it made."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from raysynth.cluster import Capacity, connect_ray, resources_of, with_resolved_resources
from raysynth.config import Config
from raysynth.context import split_of
from raysynth.home import fingerprint, raysynth_home
from raysynth.pool import PoolStore
from raysynth.pool.pipeline import generate_variants, pool_actor_options
from raysynth.prepare.backbone import pretrain_backbone
from raysynth.prepare.run import Plan


def pretrain_command(config: Config, force: bool = False) -> Path:
    """``raysynth pretrain``: the backbone's weights, trained here if missing (or ``force``)."""
    return pretrain_backbone(split_of(config), config.model, seed=config.train.seed, force=force)


def generate_command(config: Config, plan: Plan) -> dict[str, tuple[str, bool]]:
    """``raysynth generate``: every pool the plan names, on the cluster; prints one line a
    pool and returns pool label -> (key, generated now)."""
    connect_ray()
    capacity = Capacity.read()
    config = with_resolved_resources(config, capacity)  # `gpu: auto`, and resources.fake_gpus for the actors
    made = generate_variants(split_of(config), plan.pools or [config.pool], **pool_actor_options(config, capacity.autoscales))
    for label, (key, now) in made.items():
        print(f"strength {label}: {'generated' if now else 'cached'} {PoolStore().path(key)}")
    return made


def finetune_generator_command(config: Config, options, output: Path | None) -> Path:
    """``raysynth finetune-generator``: LoRA + textual inversion of Stable Diffusion on the
    split's shots the pool's quality setting allows (DataDream's step), into ``output``
    (default: a directory of the home named by what shaped it)."""
    from raysynth.generators.backends.stable_diffusion import check_model_available
    from raysynth.generators.finetune import finetune_generator
    from raysynth.generators.quality import quality_controlled_shots
    from raysynth.pool.shards import to_uint8

    check_model_available(options.model)
    split = split_of(config)
    shots = quality_controlled_shots(split.train, split.classes, config.pool.quality)
    if output is None:
        key = fingerprint(split.fingerprint, dataclasses.asdict(options), sorted(config.pool.quality.items()))
        output = raysynth_home() / "generators" / "finetuned" / f"{config.dataset}-{key}"
    connect_ray()
    return finetune_generator(
        options, to_uint8(shots.images), shots.labels.numpy(), split.classes, split.metaclass, output,
        resources=resources_of(config, "finetune"),
    )
