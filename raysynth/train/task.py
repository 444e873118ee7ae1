"""Everything a trial needs, built once per worker process and reused.

A trial never pretrains a backbone, runs a generator or runs k-means: the driver
prepares all three before the search (:func:`prepare`), and trials only *load* them
from RAYSYNTH_HOME. Loaded
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
from raysynth.losses import parse_loss
from raysynth.data import FewShotSplit, load_split
from raysynth.generators.pipeline import generate_pool
from raysynth.models import build_classifier, create_backbone
from raysynth.models.classifier import FewShotClassifier
from raysynth.pool import PoolStore, pool_key
from raysynth.train.loop import TrainData
from raysynth.train.partitions import load_or_compute, num_clusters, partition_path, partition_vectors
from raysynth.train.pretrain import pretrain_backbone, pretrained_path

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """What the driver made sure exists before the first trial."""

    weights: str | None
    pool_keys: dict[float, str]  # strength -> pool key
    generated: int  # pools generated now (0 on a warm cache)


def prepare(config: Config, strengths: list[float] | None = None, clusters: list[float] | None = None) -> Prepared:
    """Pretrain the backbone, generate the pools and compute the k-means partitions the
    search can ask for (each cached; a warm cache makes this a few file checks)."""
    split = cached_split(config)
    weights = None
    if not config.model.pretrained:
        weights = str(pretrain_backbone(split, config.model, seed=config.train.seed))
    keys, generated = {}, 0
    for s in strengths or [config.pool.strength]:
        key, made = generate_pool(split, config.pool, strength=s)
        keys[s] = key
        generated += made
    objectives = parse_loss(config.loss)
    if any(o.needs_partitions for o in objectives) and config.partition.method == "static":
        for s in strengths or [config.pool.strength]:
            for m in clusters or [config.partition.clusters_per_class]:
                trial = dataclasses.replace(
                    config,
                    pool=dataclasses.replace(config.pool, strength=s),
                    partition=dataclasses.replace(config.partition, clusters_per_class=m),
                )
                train_data(trial, use_synthetic=True)
    return Prepared(weights, keys, generated)


def _data_key(config: Config) -> tuple:
    import json

    return (config.dataset, json.dumps(dataclasses.asdict(config.data), sort_keys=True))


@functools.lru_cache(maxsize=4)
def _split(key: tuple) -> FewShotSplit:
    import json

    from raysynth.config import DataConfig, from_dict

    dataset, data = key
    return load_split(dataset, from_dict(DataConfig, json.loads(data)))


def cached_split(config: Config) -> FewShotSplit:
    return _split(_data_key(config))


@functools.lru_cache(maxsize=8)
def _pool_tensors(root: str, key: str, gamma: float, num_classes: int, filter: str = "none", fraction: float = 0.2):
    return PoolStore(root).load(key).tensors(gamma, num_classes, filter, fraction)


@functools.lru_cache(maxsize=2)
def _backbone_state(config_json: str, weights: str | None) -> dict:
    import json

    from raysynth.config import ModelConfig, from_dict

    model = create_backbone(from_dict(ModelConfig, json.loads(config_json)), weights)
    return {k: v.clone() for k, v in model.state_dict().items()}


def build_model(config: Config, num_classes: int, with_objectives: bool = True, index: int = 0) -> FewShotClassifier:
    """A fresh classifier: backbone weights (memoised per process) + new LoRA + new head,
    plus what the selected objectives need (a projection head, a prototype head).
    ``index`` seeds the i-th of several repeats (UniCon's n_contr encoders)."""
    import json

    from raysynth.losses import PrototypeHead
    from raysynth.models.backbone import create_model

    weights = None
    if not config.model.pretrained:
        split = cached_split(config)
        path = pretrained_path(split, config.model)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained backbone missing: {path} (run `raysynth pretrain`)")
        weights = str(path)
    state = _backbone_state(json.dumps(dataclasses.asdict(config.model), sort_keys=True), weights)
    torch.manual_seed(config.train.seed + 1009 * index)
    clip = create_model(config.model.name)
    clip.load_state_dict(state)
    if not with_objectives:
        return build_classifier(clip, num_classes, lora=None, normalize=normalizes(config))
    objectives = parse_loss(config.loss)
    head, projection_dim = None, None
    embed_dim = clip.visual.output_dim
    for o in objectives:
        if o.head == "prototype":
            p = o.params
            head = PrototypeHead(num_classes, embed_dim, p.prototypes, p.temperature, seed=config.train.seed)
    if any(o.needs_projection for o in objectives):
        # SyNC's ETF needs at least C-1 dimensions
        projection_dim = max(config.model.projection_dim, num_classes)
    if head is None and config.model.head == "zero_shot":
        from raysynth.models.classifier import zero_shot_head

        split = cached_split(config)
        head = zero_shot_head(clip, config.model.name, split.classes, split.metaclass)
    model = build_classifier(clip, num_classes, config.model.lora, head=head, projection_dim=projection_dim, normalize=normalizes(config))
    return model.to("cuda") if torch.cuda.is_available() else model


def normalizes(config: Config) -> bool:
    """Pixel normalisation: explicit, else on for pretrained CLIP weights."""
    return config.model.normalize if config.model.normalize is not None else bool(config.model.pretrained)


def build_models(config: Config, num_classes: int) -> list[FewShotClassifier]:
    """n_contr models: seeds of one config (joint) or UniCon's encoders (two-stage)."""
    return [build_model(config, num_classes, index=i) for i in range(config.train.n_contr)]


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
            str(store.root), key, config.pool.gamma, split.num_classes, config.pool.filter, config.pool.filter_fraction
        )
        if any(o.needs_partitions for o in parse_loss(config.loss)):
            # partitions are of the filtered pool: the filter is part of their cache key
            selection = key if config.pool.filter == "none" else f"{key}-{config.pool.filter}-{config.pool.filter_fraction}"
            _attach_partitions(config, data, split.fingerprint, selection)
    return data


_partition_memo: dict[Path, tuple] = {}  # per process: a trial loads each partition once


def _attach_partitions(config: Config, data: TrainData, split_fingerprint: str, pool: str) -> None:
    k = num_clusters(config.partition, data.num_classes, len(data.real_labels) + len(data.syn_images))
    data.num_partitions = k
    if config.partition.method == "online":
        data.real_vectors, data.syn_vectors = partition_vectors(config, data.real_images, data.syn_images)
        return
    path = partition_path(config, split_fingerprint, pool, k)
    if path not in _partition_memo:
        _partition_memo[path] = load_or_compute(config, split_fingerprint, pool, data.real_images, data.syn_images, k)[:2]
    data.real_part, data.syn_part = _partition_memo[path]
