"""Typed configuration: dataclasses with help text, YAML loading, ``--set`` overrides.

A search is described by one YAML file (``search_spaces/<dataset>.yaml``) that holds the
whole :class:`Config` — data, model, pool, training — plus the search space under
``search.space``. Everything is validated here, once, at the edge: a bad value raises
:class:`ConfigError` whose message is one line naming the field, which the CLI prints
and turns into exit code 2 before anything is started or written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """Bad user input. The message is one line that names the field and what is wrong."""


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


def raysynth_home() -> Path:
    """Absolute home of the MLflow store, pool store, weights and Tune state.

    Absolute on purpose: a job started by ``ray job submit`` runs in a temporary working
    directory, where a relative path would be lost with the job.
    """
    return Path(os.environ.get("RAYSYNTH_HOME", "~/.raysynth")).expanduser().resolve()


@dataclass
class DataConfig:
    root: str | None = _help("Where a real dataset lives (unused for digits).", None)
    shots: int | str = _help("Real training images per novel class (k-shot), or 'all'.", 8)
    seed: int = _help("Seed of the k-shot sample; the validation/test splits never change.", 0)
    image_size: int = _help("Images are resized to image_size x image_size, 3 channels.", 32)
    val_per_class: int = _help("Fixed validation images per novel class.", 80)
    test_per_class: int = _help("Fixed test images per novel class (real datasets: <= 0 keeps the whole official test split).", 60)
    metaclass: str = _help("What every class is a kind of, for prompts ('folder' datasets; cub: bird, flowers: flower).", "object")


@dataclass
class LoraConfig:
    r: int = _help("LoRA rank.", 8)
    alpha: float = _help("LoRA alpha (scaling = alpha / r).", 16.0)
    dropout: float = _help("LoRA dropout.", 0.0)
    target_modules: list[str] = _help(
        "Module names in the open_clip vision tower that get LoRA adapters. 'attn' is the "
        "fused nn.MultiheadAttention (peft adapts its in/out projections).",
        factory=lambda: ["attn", "c_fc", "c_proj"],
    )


@dataclass
class PretrainConfig:
    steps: int = _help("Optimiser steps of backbone pretraining on the base classes.", 150)
    batch_size: int = _help("Pretraining batch size.", 128)
    lr: float = _help("Pretraining learning rate (AdamW, cosine).", 2e-3)


@dataclass
class ModelConfig:
    name: str = _help("open_clip model name; 'raysynth-tiny' ships inside the package.", "raysynth-tiny")
    pretrained: str | None = _help(
        "open_clip pretrained tag or checkpoint path; empty = raysynth's own pretraining "
        "on the dataset's base classes, cached under RAYSYNTH_HOME/weights.",
        None,
    )
    lora: LoraConfig = _help("LoRA adapters on the vision tower.", factory=LoraConfig)
    head: str = _help(
        "'linear' (random init) or 'zero_shot': cosine classifier initialised from the text "
        "embeddings of 'a photo of a <class>, a type of <metaclass>.' (needs a text tower).",
        "linear",
    )
    normalize: bool | None = _help(
        "Normalise pixels with the model's mean/std before the encoder; empty = yes when "
        "model.pretrained is set (CLIP weights expect it), no for raysynth's own pretraining.",
        None,
    )
    projection_dim: int = _help(
        "Output size of the projection head used by contrastive objectives (unicon, supcon, "
        "sync); raised to the class count when SyNC's ETF needs more.",
        128,
    )
    pretrain: PretrainConfig = _help("Own pretraining of the backbone.", factory=PretrainConfig)


@dataclass
class PoolConfig:
    generator: str = _help("Generator backend (registered name): 'morph', 'ddpm' or 'stable_diffusion'.", "morph")
    options: dict[str, Any] = _help(
        "Backend options, validated by the backend (e.g. ddpm: train_steps, inference_steps; "
        "stable_diffusion: model, steps, guidance, lora). See `raysynth.generators`.",
        factory=dict,
    )
    mode: str = _help(
        "Where references come from: 'mix' (Diff-Mix: another class), 'aug' (Diff-Aug: the "
        "same class), 'gen' (Diff-Gen: no reference, from noise / text).",
        "mix",
    )
    per_class: int = _help("Synthetic images per novel class.", 64)
    strength: float = _help("Translation strength s in (0, 1].", 0.9)
    gamma: float = _help("Diff-Mix label non-linearity: target class gets s**gamma.", 0.5)
    quality: dict[str, str] = _help(
        "Per-class quality control (UniCon protocol): class name -> 'faithful', "
        "'counter' or 'morph:<rho>'. Classes not listed are faithful.",
        factory=dict,
    )
    learn_from: str = _help(
        "What the generator learns the classes from: 'shots' (the k real shots) or 'prior' "
        "(the dataset's images outside validation/test, standing in for what a pretrained "
        "diffusion model knows beyond the shots).",
        "shots",
    )
    seed: int = _help("Seed of the pool plan (references, partners, per-image seeds).", 0)
    actors: int = _help("Ray Data actors that run the generator.", 1)
    actor_gpus: float | None = _help(
        "GPUs per generation actor; empty = 1 when the cluster has GPUs, else 0 (CPU actors).", None
    )
    shard_size: int = _help(
        "Images per shard: the unit of work of an actor and of resumption (a killed run "
        "re-run keeps its finished shards).",
        32,
    )
    clip_model: str | None = _help(
        "open_clip model that scores every synthetic image against the class prompts "
        "(CLIP filtering); empty = no scores.",
        None,
    )
    clip_pretrained: str | None = _help("open_clip pretrained tag or checkpoint path of clip_model.", None)
    filter: str = _help(
        "Applied at load time to the stored CLIP scores: 'none', 'bottom' (drop the lowest "
        "filter_fraction of each class) or 'mismatch' (drop images CLIP assigns to another class).",
        "none",
    )
    filter_fraction: float = _help("Fraction of each class dropped by filter 'bottom'.", 0.2)


@dataclass
class TrainConfig:
    epochs: int = _help("Epochs of few-shot training; ASHA's max_t.", 6)
    steps_per_epoch: int = _help("Optimiser steps per epoch.", 20)
    batch_real: int = _help("Real images per step (the few shots, cycled).", 16)
    batch_syn: int = _help("Synthetic images per step.", 32)
    lr: float = _help("Learning rate of LoRA + head (AdamW).", 2e-3)
    weight_decay: float = _help("AdamW weight decay.", 1e-4)
    workers: int = _help(
        "1: the loop runs inside the Tune trial; >1: Ray Train TorchTrainer with DDP.", 1
    )
    threads: int = _help("torch threads per worker.", 1)
    seed: int = _help("Seed of initialisation and batch order.", 0)
    protocol: str = _help(
        "'joint': one training run with every objective of `loss` summed; 'two_stage': "
        "UniCon's protocol (encoder + projection trained with the representation objectives, "
        "then classifiers on frozen features); 'auto': two_stage when every selected "
        "objective is a representation objective (unicon, supcon, sync), else joint.",
        "auto",
    )
    n_contr: int = _help("Two-stage: encoder trainings per evaluation (UniCon's n_contr; paper 3).", 1)
    n_classif: int = _help("Two-stage: classifier trainings per encoder (UniCon's n_classif; paper 3).", 1)
    probe_steps: int = _help("Two-stage: optimiser steps of each classifier on frozen features.", 150)
    probe_lr: float = _help("Two-stage: learning rate of the classifiers on frozen features.", 1e-2)


@dataclass
class PartitionConfig:
    clusters_per_class: float = _help(
        "K = round(clusters_per_class x classes) regions (paper: 2; search {0.5, 1, 2, 4}).", 2.0
    )
    space: str = _help(
        "What is clustered: 'pixels' (as the official code; images at most 32x32) or "
        "'features' (the frozen pretrained backbone's image features).",
        "pixels",
    )
    method: str = _help(
        "'static': FAISS k-means once per K, cached (full method); 'online': mini-batch "
        "k-means updated with every batch's synthetic images (lightweight variant).",
        "static",
    )
    niter: int = _help("k-means iterations (paper: 300).", 300)
    seed: int = _help("k-means seed.", 0)


@dataclass
class SchedulerConfig:
    name: str = _help("'asha' or 'fifo'.", "asha")
    grace_period: int = _help("ASHA: epochs every trial runs before it can be stopped.", 3)
    reduction_factor: float = _help("ASHA reduction factor.", 3.0)


@dataclass
class SearchConfig:
    algorithm: str = _help(
        "optuna-tpe, optuna-gp, skopt-gp, random (see raysynth.search.searchers).", "optuna-tpe"
    )
    initial_points: int = _help(
        "Random trials before a model-based searcher starts modelling (UniCon: 20 of 100).", 8
    )
    trials: int = _help("Number of trials.", 24)
    concurrency: int = _help("Trials run at once.", 2)
    seed: int = _help("Seed of the searcher.", 0)
    metric: str = _help("Metric the search maximises.", "val_acc")
    scheduler: SchedulerConfig = _help("Early stopping.", factory=SchedulerConfig)
    space: dict[str, Any] = _help(
        "Search space: dotted config field -> distribution, plus 'class_weights'.", factory=dict
    )
    final_eval: bool = _help(
        "After the search, retrain the best config and two baselines (real only; all "
        "weights 1) with Ray Train and evaluate each once on the test split.",
        True,
    )
    final_seeds: int = _help(
        "Seeds each final model is retrained with (test accuracy reported as mean ± std).", 3
    )
    max_failures: int = _help(
        "Times a failed trial (an exception, a NaN/inf loss, a dead worker process or node) is "
        "retried from its last checkpoint before it is recorded as failed.",
        2,
    )
    checkpoint_every: int = _help(
        "Checkpoint each trial every N epochs (trainable weights, optimiser and schedule state), "
        "so a retried or resumed trial continues from there; 0: never (a retry starts over).",
        1,
    )
    resources: dict[str, float] = _help(
        "Resources of one trial, e.g. {cpu: 1, gpu: 0.25} (fractional GPUs let several LoRA "
        "trials share one). Empty: train.threads CPUs, and a whole GPU when one is present.",
        factory=dict,
    )


@dataclass
class Config:
    dataset: str = _help("digits (the embedded default).", "digits")
    data: DataConfig = _help("Dataset and few-shot split.", factory=DataConfig)
    model: ModelConfig = _help("Backbone and adapters.", factory=ModelConfig)
    pool: PoolConfig = _help("Synthetic pool.", factory=PoolConfig)
    train: TrainConfig = _help("Few-shot training.", factory=TrainConfig)
    loss: dict[str, dict[str, Any]] = _help(
        "Objectives and their parameters, summed: ce, bound, unicon, supcon, sync, prototype "
        "(see raysynth.losses). Default: ce with real and synthetic weights 1.",
        factory=lambda: {"ce": {}},
    )
    partition: PartitionConfig = _help(
        "k-means regions of real + synthetic data (used by bound and sync).", factory=PartitionConfig
    )
    search: SearchConfig = _help("Hyperparameter search.", factory=SearchConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- validation


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check (and gently coerce) ``value`` against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, val_tp = typing.get_args(tp)
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys are errors that name the field."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"unknown config field '{path}' (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values parsed as YAML) to a raw config mapping."""
    data = json.loads(json.dumps(data))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        cls: Any = Config
        node = data
        for i, part in enumerate(parts):
            if cls is None or not dataclasses.is_dataclass(cls):
                # inside a free-form mapping (pool.quality, search.space): any key is allowed
                if i < len(parts) - 1:
                    node = node.setdefault(part, {})
                    continue
                node[part] = _parse_scalar(raw)
                break
            fields = {f.name: f for f in dataclasses.fields(cls)}
            if part not in fields:
                raise ConfigError(f"--set {key}: unknown config field '{'.'.join(parts[: i + 1])}'")
            tp = typing.get_type_hints(cls)[part]
            if i == len(parts) - 1:
                node[part] = _parse_scalar(raw)
            elif cls is SearchConfig and part == "space":
                # search-space keys are themselves dotted field names: the rest is one key
                space = node.setdefault(part, {})
                if not isinstance(space, dict):
                    raise ConfigError(f"--set {key}: 'space' is not a mapping")
                space[".".join(parts[i + 1 :])] = _parse_scalar(raw)
                break
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"--set {key}: '{part}' is not a mapping")
                cls = tp if dataclasses.is_dataclass(tp) else None
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"search space file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: malformed YAML{at}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config/search space, apply ``--set`` overrides, validate everything."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    if isinstance(data.get("loss"), dict):
        # `loss: {bound:}` in YAML selects an objective with its defaults
        data["loss"] = {k: ({} if v is None else v) for k, v in data["loss"].items()}
    config = from_dict(Config, data)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Cross-field checks that types alone cannot express."""
    from raysynth.data import DATASETS
    from raysynth.generators import GENERATORS
    from raysynth.search.searchers import SEARCHERS

    if config.dataset not in DATASETS:
        raise ConfigError(f"dataset: unknown dataset '{config.dataset}' (known: {', '.join(sorted(DATASETS))})")
    from raysynth.data import DATASET_CHECKS

    if config.dataset in DATASET_CHECKS:  # the data first: the most basic thing to get right
        DATASET_CHECKS[config.dataset](config.data)
    if config.pool.generator not in GENERATORS:
        raise ConfigError(
            f"pool.generator: unknown generator '{config.pool.generator}' "
            f"(known: {', '.join(sorted(GENERATORS))})"
        )
    if config.pool.mode not in ("mix", "aug", "gen"):
        raise ConfigError(f"pool.mode: must be 'mix', 'aug' or 'gen', got '{config.pool.mode}'")
    GENERATORS[config.pool.generator].parse_options(config.pool.options)
    GENERATORS[config.pool.generator].preflight(config.pool)
    if config.pool.filter not in ("none", "bottom", "mismatch"):
        raise ConfigError(f"pool.filter: must be 'none', 'bottom' or 'mismatch', got '{config.pool.filter}'")
    if config.pool.filter != "none" and not config.pool.clip_model:
        raise ConfigError(f"pool.filter: '{config.pool.filter}' needs CLIP scores; set pool.clip_model")
    if not 0.0 <= config.pool.filter_fraction < 1.0:
        raise ConfigError(f"pool.filter_fraction: must be in [0, 1), got {config.pool.filter_fraction}")
    if config.pool.actor_gpus is not None and config.pool.actor_gpus < 0:
        raise ConfigError(f"pool.actor_gpus: must be >= 0, got {config.pool.actor_gpus}")
    if not 0.0 < config.pool.strength <= 1.0:
        raise ConfigError(f"pool.strength: must be in (0, 1], got {config.pool.strength}")
    if config.pool.learn_from not in ("shots", "prior"):
        raise ConfigError(f"pool.learn_from: must be 'shots' or 'prior', got '{config.pool.learn_from}'")
    if config.pool.gamma <= 0:
        raise ConfigError(f"pool.gamma: must be > 0, got {config.pool.gamma}")
    for name, value in config.pool.quality.items():
        from raysynth.generators.quality import parse_quality

        parse_quality(value, f"pool.quality.{name}")
    positive = {
        "data.image_size": config.data.image_size,
        "pool.per_class": config.pool.per_class,
        "pool.actors": config.pool.actors,
        "pool.shard_size": config.pool.shard_size,
        "train.epochs": config.train.epochs,
        "train.steps_per_epoch": config.train.steps_per_epoch,
        "train.batch_real": config.train.batch_real,
        "train.batch_syn": config.train.batch_syn,
        "train.workers": config.train.workers,
        "train.threads": config.train.threads,
        "train.n_contr": config.train.n_contr,
        "train.n_classif": config.train.n_classif,
        "train.probe_steps": config.train.probe_steps,
        "model.projection_dim": config.model.projection_dim,
        "partition.niter": config.partition.niter,
        "search.trials": config.search.trials,
        "search.concurrency": config.search.concurrency,
        "search.initial_points": config.search.initial_points,
        "search.final_seeds": config.search.final_seeds,
        "model.pretrain.steps": config.model.pretrain.steps,
        "model.lora.r": config.model.lora.r,
    }
    if config.data.shots != "all" and (isinstance(config.data.shots, str) or config.data.shots < 1):
        raise ConfigError(f"data.shots: must be an integer >= 1 or 'all', got {config.data.shots!r}")
    if config.dataset != "digits" and not config.model.pretrained:
        raise ConfigError(
            f"model.pretrained: dataset '{config.dataset}' has no base classes to pretrain on; give an "
            "open_clip pretrained tag (e.g. openai) or a checkpoint path"
        )
    from raysynth.models.backbone import check_pretrained

    check_pretrained(config.model)
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{name}: must be >= 1, got {value}")
    if config.model.head not in ("linear", "zero_shot"):
        raise ConfigError(f"model.head: must be 'linear' or 'zero_shot', got '{config.model.head}'")
    if config.train.lr <= 0:
        raise ConfigError(f"train.lr: must be > 0, got {config.train.lr}")
    if config.train.probe_lr <= 0:
        raise ConfigError(f"train.probe_lr: must be > 0, got {config.train.probe_lr}")
    validate_objectives(config)
    if config.search.algorithm not in SEARCHERS:
        raise ConfigError(
            f"search.algorithm: unknown algorithm '{config.search.algorithm}' "
            f"(known: {', '.join(sorted(SEARCHERS))})"
        )
    for name in ("max_failures", "checkpoint_every"):
        if getattr(config.search, name) < 0:
            raise ConfigError(f"search.{name}: must be >= 0, got {getattr(config.search, name)}")
    for name, amount in config.search.resources.items():
        if name not in ("cpu", "gpu", "memory"):
            raise ConfigError(f"search.resources.{name}: unknown resource (known: cpu, gpu, memory)")
        if amount < 0:
            raise ConfigError(f"search.resources.{name}: must be >= 0, got {amount}")
    if config.search.scheduler.name not in ("asha", "fifo"):
        raise ConfigError(f"search.scheduler.name: must be 'asha' or 'fifo', got '{config.search.scheduler.name}'")
    if config.search.metric != "val_acc":
        raise ConfigError(f"search.metric: only 'val_acc' is reported, got '{config.search.metric}'")
    from raysynth.search.space import parse_space

    parse_space(config.search.space, config)


def validate_objectives(config: Config) -> None:
    """The loss section, the training protocol and the partitions agree."""
    from raysynth.losses import parse_loss

    objectives = parse_loss(config.loss)
    if config.train.protocol not in ("auto", "joint", "two_stage"):
        raise ConfigError(f"train.protocol: must be 'auto', 'joint' or 'two_stage', got '{config.train.protocol}'")
    if config.train.protocol == "two_stage" and not any(o.representation for o in objectives):
        raise ConfigError(
            "train.protocol: 'two_stage' needs a representation objective in loss (unicon, supcon or sync)"
        )
    p = config.partition
    if p.clusters_per_class <= 0:
        raise ConfigError(f"partition.clusters_per_class: must be > 0, got {p.clusters_per_class}")
    if p.space not in ("pixels", "features"):
        raise ConfigError(f"partition.space: must be 'pixels' or 'features', got '{p.space}'")
    if p.method not in ("static", "online"):
        raise ConfigError(f"partition.method: must be 'static' or 'online', got '{p.method}'")


def training_protocol(config: Config) -> str:
    """'joint' or 'two_stage' ('auto' resolved from the selected objectives)."""
    if config.train.protocol != "auto":
        return config.train.protocol
    from raysynth.losses import parse_loss

    objectives = parse_loss(config.loss)
    return "two_stage" if all(o.representation for o in objectives) else "joint"


def fingerprint(*parts: Any, length: int = 16) -> str:
    """Stable content hash of JSON-serialisable parts (cache keys)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:length]


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
