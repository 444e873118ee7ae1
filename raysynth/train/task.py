"""Everything a trial needs, built once per worker process and reused.

A trial never pretrains a backbone or runs a generator: the driver prepares both before
the search (:func:`prepare`), and trials only *load* them from RAYSYNTH_HOME. Loaded
splits, pools and weights are memoised per process, so with ``reuse_actors=True`` a
Tune actor pays for loading once, not once per trial.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from raysynth.config import Config
from raysynth.data import FewShotSplit, load_split
from raysynth.generators.pipeline import generate_pool
from raysynth.models import build_classifier, create_backbone
from raysynth.models.classifier import FewShotClassifier
from raysynth.pool import PoolStore, pool_key
from raysynth.train.loop import TrainData
from raysynth.train.pretrain import pretrain_backbone, pretrained_path

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What the driver made sure exists before the first trial."""

    weights: str | None
    pool_keys: dict[float, str]  # strength -> pool key
    generated: int  # pools generated now (0 on a warm cache)


def prepare(config: Config, strengths: list[float] | None = None) -> Prepared:
    """Pretrain the backbone and generate the pools the search can ask for (cached)."""
    split = cached_split(config)
    weights = None
    if not config.model.pretrained:
        weights = str(pretrain_backbone(split, config.model, seed=config.train.seed))
    keys, generated = {}, 0
    for s in strengths or [config.pool.strength]:
        key, made = generate_pool(split, config.pool, strength=s)
        keys[s] = key
        generated += made
    return Prepared(weights, keys, generated)


def _data_key(config: Config) -> tuple:
    d = config.data
    return (config.dataset, d.root, d.shots, d.seed, d.image_size, d.val_per_class, d.test_per_class)


@functools.lru_cache(maxsize=4)
def _split(key: tuple) -> FewShotSplit:
    from raysynth.config import DataConfig

    dataset, root, shots, seed, size, val, test = key
    return load_split(dataset, DataConfig(root, shots, seed, size, val, test))


def cached_split(config: Config) -> FewShotSplit:
    return _split(_data_key(config))


@functools.lru_cache(maxsize=8)
def _pool_tensors(root: str, key: str, gamma: float, num_classes: int):
    return PoolStore(root).load(key).tensors(gamma, num_classes)


@functools.lru_cache(maxsize=2)
def _backbone_state(config_json: str, weights: str | None) -> dict:
    import json

    from raysynth.config import ModelConfig, from_dict

    model = create_backbone(from_dict(ModelConfig, json.loads(config_json)), weights)
    return {k: v.clone() for k, v in model.state_dict().items()}


def build_model(config: Config, num_classes: int) -> FewShotClassifier:
    """A fresh classifier: backbone weights (memoised per process) + new LoRA + new head."""
    import json

    from raysynth.models.backbone import create_model

    weights = None
    if not config.model.pretrained:
        split = cached_split(config)
        path = pretrained_path(split, config.model)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained backbone missing: {path} (run `raysynth pretrain`)")
        weights = str(path)
    state = _backbone_state(json.dumps(dataclasses.asdict(config.model), sort_keys=True), weights)
    torch.manual_seed(config.train.seed)
    clip = create_model(config.model.name)
    clip.load_state_dict(state)
    return build_classifier(clip, num_classes, config.model.lora)


def train_data(config: Config, use_synthetic: bool = True, store_root: str | Path | None = None) -> TrainData:
    split = cached_split(config)
    data = TrainData(
        real_images=split.train.images,
        real_labels=split.train.labels,
        val_images=split.val.images,
        val_labels=split.val.labels,
        num_classes=split.num_classes,
    )
    if use_synthetic:
        store = PoolStore(store_root)
        key = pool_key(split.fingerprint, config.pool)
        if not store.exists(key):
            raise FileNotFoundError(f"synthetic pool {key} missing from {store.root}: the driver must generate it first")
        data.syn_images, data.syn_soft_labels, data.syn_class = _pool_tensors(
            str(store.root), key, config.pool.gamma, split.num_classes
        )
    return data
