"""The config sections: one dataclass per section, each field with its help text and rules.

A search is described by one YAML file (``search_spaces/<dataset>.yaml``) that holds the
whole :class:`Config` — data, model, pool, training — plus the search space under
``search.space``. Rules that need a registry or several fields (a known generator, a
selected objective, a search space) are checked by the package that owns the section;
``raysynth.validate.load_config`` composes those checks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from raysynth.config.typed import field_ as _help


@dataclass
class DataConfig:
    root: str | None = _help("Where a real dataset lives (unused for digits).", None)
    shots: int | str = _help("Real training images per novel class (k-shot), or 'all'.", 8, ge=1)
    seed: int = _help("Seed of the k-shot sample; the validation/test splits never change.", 0, ge=0, le=2**32 - 1)
    image_size: int = _help("Images are resized to image_size x image_size, 3 channels.", 32, ge=8, le=1024)
    val_per_class: int = _help("Fixed validation images per novel class.", 80, ge=1)
    test_per_class: int = _help("Fixed test images per novel class (real datasets: 0 keeps the whole official test split).", 60, ge=0)
    metaclass: str = _help("What every class is a kind of, for prompts ('folder' datasets; cub: bird, flowers: flower).", "object")


@dataclass
class LoraConfig:
    r: int = _help("LoRA rank.", 8, ge=1)
    alpha: float = _help("LoRA alpha (scaling = alpha / r).", 16.0, gt=0.0)
    dropout: float = _help("LoRA dropout (a probability).", 0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = _help(
        "Module names in the open_clip vision tower that get LoRA adapters. 'attn' is the "
        "fused nn.MultiheadAttention (peft adapts its in/out projections).", factory=lambda: ["attn", "c_fc", "c_proj"])


@dataclass
class PretrainConfig:
    steps: int = _help("Optimiser steps of backbone pretraining on the base classes.", 150, ge=1)
    batch_size: int = _help("Pretraining batch size.", 128, ge=1)
    lr: float = _help("Pretraining learning rate (AdamW, cosine).", 2e-3, gt=0.0)


@dataclass
class ModelConfig:
    name: str = _help("open_clip model name; 'raysynth-tiny' ships inside the package.", "raysynth-tiny")
    pretrained: str | None = _help(
        "open_clip pretrained tag or checkpoint path; empty = raysynth's own pretraining "
        "on the dataset's base classes, cached under RAYSYNTH_HOME/weights.", None)
    lora: LoraConfig = _help("LoRA adapters on the vision tower.", factory=LoraConfig)
    head: str = _help(
        "'linear' (random init) or 'zero_shot': cosine classifier initialised from the text "
        "embeddings of 'a photo of a <class>, a type of <metaclass>.' (needs a text tower).",
        "linear", choices=("linear", "zero_shot"))
    normalize: bool | None = _help(
        "Normalise pixels with the model's mean/std before the encoder; empty = yes when "
        "model.pretrained is set (CLIP weights expect it), no for raysynth's own pretraining.", None)
    projection_dim: int = _help(
        "Output size of the projection head used by contrastive objectives (unicon, supcon, "
        "sync); raised to the class count when SyNC's ETF needs more.", 128, ge=1)
    pretrain: PretrainConfig = _help("Own pretraining of the backbone.", factory=PretrainConfig)


@dataclass
class PoolConfig:
    generator: str = _help("Generator backend: a name registered in raysynth.generators.backends.", "morph")
    options: dict[str, Any] = _help(
        "Backend options, validated by the backend when the config loads (e.g. ddpm: "
        "train_steps, inference_steps; stable_diffusion: model, steps, guidance, lora).", factory=dict)
    mode: str = _help(
        "Where references come from: 'mix' (Diff-Mix: another class), 'aug' (Diff-Aug: the "
        "same class), 'gen' (Diff-Gen: no reference, from noise / text).",
        "mix", choices=("mix", "aug", "gen"))
    per_class: int = _help("Synthetic images per novel class.", 64, ge=1)
    strength: float = _help("Translation strength s in (0, 1].", 0.9, gt=0.0, le=1.0)
    strengths: list[float] = _help(
        "Diff-Mix's randomised strength: each image's s drawn from this set (e.g. [0.5, 0.7, "
        "0.9]), its soft label from its own s; empty: every image uses `strength`.", factory=list, gt=0.0, le=1.0)
    strength_sets: dict[str, list[float]] = _help(
        "Named strength sets a search can choose between: search.space.pool.strengths: "
        "{type: choice, values: [<name>, ...]} gives each trial the pool whose images draw "
        "their strengths from the named set (a one-value set is a fixed strength), e.g. "
        "{diffmix: [0.5, 0.7, 0.9], strong: [0.9]}.", factory=dict, gt=0.0, le=1.0)
    gamma: float = _help("Diff-Mix label non-linearity: target class gets s**gamma.", 0.5, gt=0.0)
    quality: dict[str, str] = _help(
        "Per-class quality control (UniCon protocol): class name -> 'faithful', "
        "'counter' or 'morph:<rho>'. Classes not listed are faithful.", factory=dict)
    learn_from: str = _help(
        "What the generator learns the classes from: 'shots' (the k real shots) or 'prior' "
        "(the dataset's images outside validation/test, standing in for what a pretrained "
        "diffusion model knows beyond the shots).",
        "shots", choices=("shots", "prior"))
    seed: int = _help("Seed of the pool plan (references, partners, per-image seeds).", 0, ge=0, le=2**32 - 1)
    actors: int = _help("Ray Data actors that run the generator (each asks for resources.generation).", 1, ge=1)
    shard_size: int = _help(
        "Images per shard: the unit of work of an actor and of resumption (a killed run "
        "re-run keeps its finished shards).", 32, ge=1)
    clip_model: str | None = _help(
        "open_clip model that scores every synthetic image against the class prompts "
        "(CLIP filtering); empty = no scores.", None)
    clip_pretrained: str | None = _help("open_clip pretrained tag or checkpoint path of clip_model.", None)
    filter: str = _help(
        "Applied at load time to the stored CLIP scores: 'none', 'bottom' (drop the lowest "
        "filter_fraction of each class) or 'mismatch' (drop images CLIP assigns to another class).",
        "none", choices=("none", "bottom", "mismatch"))
    filter_fraction: float = _help("Fraction of each class dropped by filter 'bottom'.", 0.2, ge=0.0, lt=1.0)


@dataclass
class TrainConfig:
    epochs: int = _help("Epochs of few-shot training; ASHA's max_t.", 6, ge=1)
    steps_per_epoch: int | str = _help(
        "Optimiser steps per epoch, or 'pass': one pass over the synthetic pool (over the real "
        "shots without one), as the papers' epochs over the pooled real + synthetic set.", 20)
    batch_real: int = _help("Real images per step (the few shots, cycled).", 16, ge=1)
    batch_syn: int = _help("Synthetic images per step.", 32, ge=1)
    lr: float = _help("Learning rate of LoRA + head (AdamW).", 2e-3, gt=0.0)
    weight_decay: float = _help("AdamW weight decay.", 1e-4, ge=0.0)
    workers: int = _help(
        "1: the loop runs inside the Tune trial; >1: Ray Train TorchTrainer with DDP.", 1, ge=1
    )
    threads: int = _help("torch threads per worker.", 1, ge=1)
    augment: str = _help(
        "Training augmentation of real and synthetic images: 'affine' (small random warps, "
        "legible digits), 'datadream' (random resized crop, flip, colour jitter, grayscale, "
        "blur, solarization: DataDream's and the ICML 2025 paper's), 'none'.",
        "affine", choices=("affine", "datadream", "none"))
    mix: str = _help(
        "CutMix/Mixup (ICML 2025's official code): 'none', 'mixup', 'cutmix', or 'both' (one "
        "of the two per mixed step). Real and synthetic rows are each mixed among themselves; "
        "a mixed synthetic row keeps its class for the UniCon weights and its k-means region. "
        "Needs objectives with a cross-entropy on real images (ce, bound).",
        "none", choices=("none", "mixup", "cutmix", "both"))
    mix_p: float = _help("Probability that a step is mixed (the official code: 0.2).", 0.2, ge=0.0, le=1.0)
    mix_synthetic: bool = _help("Mix the synthetic rows too (the official code does), not only the real ones.", True)
    mix_alpha: float = _help("Mixing ratio λ ~ Beta(α, α).", 1.0, gt=0.0)
    seed: int = _help("Seed of initialisation and batch order.", 0, ge=0, le=2**32 - 1)
    protocol: str = _help(
        "'joint': one training run with every objective of `loss` summed; 'two_stage': "
        "UniCon's protocol (encoder + projection trained with the representation objectives, "
        "then classifiers on frozen features); 'auto': two_stage when every selected "
        "objective is a representation objective (unicon, supcon, sync), else joint.",
        "auto", choices=("auto", "joint", "two_stage"))
    n_contr: int = _help("Two-stage: encoder trainings per evaluation (UniCon's n_contr; paper 3).", 1, ge=1)
    n_classif: int = _help("Two-stage: classifier trainings per encoder (UniCon's n_classif; paper 3).", 1, ge=1)
    probe_steps: int = _help("Two-stage: optimiser steps of each classifier on frozen features.", 150, ge=1)
    probe_lr: float = _help("Two-stage: learning rate of the classifiers on frozen features.", 1e-2, gt=0.0)


@dataclass
class PartitionConfig:
    clusters_per_class: float = _help(
        "K = round(clusters_per_class x classes) regions (paper: 2; search {0.5, 1, 2, 4}).", 2.0, gt=0.0
    )
    space: str = _help(
        "What is clustered: 'pixels' (as the official code; see pixel_side) or "
        "'features' (the frozen pretrained backbone's image features).",
        "pixels", choices=("pixels", "features"))
    pixel_side: int = _help(
        "space 'pixels': images are area-resized to at most this side before k-means. The "
        "official code uses 224 (150,528 dimensions: 62 GB of float32 for CUB's 103,200 "
        "images, FAISS on a GPU); 32 (3,072 dimensions, 1.3 GB) fits a head node.", 32, ge=1, le=1024)
    method: str = _help(
        "'static': FAISS k-means once per K, cached (full method); 'online': mini-batch "
        "k-means updated with every batch's synthetic images (lightweight variant).",
        "static", choices=("static", "online"))
    scope: str = _help(
        "Where the bound loss's discrepancy and robustness terms are computed: 'batch' (the "
        "step's pairs, as both official codes compute them, the full method's and the "
        "lightweight variant's); 'all' (ICML 2025 App. C's wording: every real and synthetic "
        "sample at its most recent output; the value is over all data, but only the batch's "
        "rows carry gradient, about batch/pool of 'batch''s regulariser gradient at CUB "
        "scale, so λ1/λ2 tuned for 'batch' barely act).",
        "batch", choices=("batch", "all"))
    niter: int = _help("k-means iterations (paper: 300).", 300, ge=1)
    seed: int = _help("k-means seed.", 0, ge=0, le=2**32 - 1)

    @property
    def over_all_data(self) -> bool:
        """Whether the regional terms run over all data (partition.scope 'all')."""
        return self.scope == "all"

    def num_clusters(self, num_classes: int, num_points: int | None = None) -> int:
        """K = round(clusters_per_class x classes), at least 1 and at most the point count."""
        k = max(1, round(self.clusters_per_class * num_classes))
        return min(k, num_points) if num_points else k


@dataclass
class SchedulerConfig:
    name: str = _help("Trial scheduler: a name registered in raysynth.search.schedulers.", "asha")
    grace_period: int = _help("ASHA: epochs every trial runs before it can be stopped.", 3, ge=1)
    reduction_factor: float = _help("ASHA reduction factor.", 3.0, gt=1.0)


@dataclass
class SearchConfig:
    algorithm: str = _help("Searcher: a name registered in raysynth.search.searchers (default optuna-gp: fewest trials to the best, benchmarks/search_efficiency.py).", "optuna-gp")
    initial_points: int = _help(
        "Random trials before a model-based searcher starts modelling (UniCon: 20 of 100).", 8, ge=1
    )
    trials: int = _help("Number of trials.", 24, ge=1)
    concurrency: int = _help("Trials run at once.", 2, ge=1)
    seed: int = _help("Seed of the searcher.", 0, ge=0, le=2**32 - 1)
    metric: str = _help("Metric the search maximises (the trials report val_acc).", "val_acc", choices=("val_acc",))
    scheduler: SchedulerConfig = _help("Early stopping.", factory=SchedulerConfig)
    space: dict[str, Any] = _help(
        "Search space: dotted config field -> distribution, plus 'class_weights'.", factory=dict
    )
    final_eval: bool = _help(
        "After the search, retrain the best config and two baselines (real only; all "
        "weights 1) with Ray Train and evaluate each once on the test split.", True)
    final_seeds: int = _help(
        "Seeds each final model is retrained with (test accuracy reported as mean ± std).", 3, ge=1
    )
    max_failures: int = _help(
        "Times a failed trial (an exception, a NaN/inf loss, a dead worker process or node) is "
        "retried from its last checkpoint before it is recorded as failed.", 2, ge=0)
    checkpoint_every: int = _help(
        "Checkpoint each trial every N epochs (trainable weights, optimiser and schedule state), "
        "so a retried or resumed trial continues from there; 0: never (a retry starts over).", 1, ge=0)
    resource_wait_s: float = _help(
        "Seconds work may wait for the resources it asks for (a trial, the generation actors, "
        "the final-training workers) before the search fails with one line naming what it "
        "asked for and what the cluster has; 0: wait forever (an autoscaler that is slow to "
        "add nodes).", 900.0, ge=0.0)


@dataclass
class WorkResources:
    cpu: float | None = _help("CPUs of one unit of this work; empty: the kind's default.", None, ge=0.0)
    gpu: float | str = _help(
        "GPUs of one unit, or 'auto': 1 when the cluster has GPU nodes or its autoscaler can "
        "start them, else 0. Fractions let units share a GPU (0.25: four trials per GPU).", "auto")
    memory: float = _help("Bytes of memory Ray reserves for one unit (0: none).", 0.0, ge=0.0)


@dataclass
class ResourcesConfig:
    """What each kind of work asks Ray for (``raysynth.cluster.resources_of``). A unit that
    was given a GPU runs on it; one whose torch sees no CUDA device is an error unless
    ``fake_gpus`` says the GPUs are declared without hardware."""

    trial: WorkResources = _help(
        "One trial (train.workers == 1; with more, each TorchTrainer worker). Default CPUs: train.threads.",
        factory=WorkResources)
    generation: WorkResources = _help(
        "One generation actor (pool.actors of them). Default CPUs: 1 with a GPU, else a "
        "share of the machine.", factory=WorkResources)
    final: WorkResources = _help(
        "One worker of the final retraining (train.workers of them). Default CPUs: train.threads.",
        factory=WorkResources)
    finetune: WorkResources = _help("One worker of generator fine-tuning. Default CPUs: 1.", factory=WorkResources)
    prepare: WorkResources = _help(
        "Each preparation task before the trials (backbone pretraining, generator fitting, "
        "k-means partitions, per-class quality). Default CPUs: 1.", factory=WorkResources)
    fake_gpus: bool = _help(
        "The cluster's GPUs are declared without hardware (tests, a CPU machine standing in for "
        "GPU nodes): work given one runs on CPU. Otherwise a GPU torch cannot use is an error "
        "naming the node, torch's CUDA build and the driver.", False)


@dataclass
class Config:
    dataset: str = _help("Dataset: a name registered in raysynth.data (digits is the embedded default).", "digits")
    data: DataConfig = _help("Dataset and few-shot split.", factory=DataConfig)
    model: ModelConfig = _help("Backbone and adapters.", factory=ModelConfig)
    pool: PoolConfig = _help("Synthetic pool.", factory=PoolConfig)
    train: TrainConfig = _help("Few-shot training.", factory=TrainConfig)
    loss: dict[str, dict[str, Any]] = _help(
        "Objectives and their parameters, summed: names registered in raysynth.losses. "
        "Default: ce with real and synthetic weights 1.", factory=lambda: {"ce": {}})
    partition: PartitionConfig = _help(
        "k-means regions of real + synthetic data (used by bound and sync).", factory=PartitionConfig
    )
    search: SearchConfig = _help("Hyperparameter search.", factory=SearchConfig)
    resources: ResourcesConfig = _help("What each kind of work asks Ray for.", factory=ResourcesConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FinetuneOptions:
    """``raysynth finetune-generator``'s options: each field is a flag of the command
    (``--batch-size`` for ``batch_size``), with its help text and rules; the command builds
    them with :func:`raysynth.config.from_dict`, which checks the rules."""

    model: str = _help("Stable Diffusion: hub id or local diffusers directory.", "")
    rank: int = _help("UNet LoRA rank (Diff-Mix: 10).", 10, ge=1)
    alpha: float | None = _help("LoRA alpha (default: the rank).", None, gt=0.0)
    steps: int = _help("Optimiser steps (per class with --per-class).", 1000, ge=1)
    batch_size: int = _help("Images per step.", 4, ge=1)
    lr_lora: float = _help("Learning rate of the UNet LoRA.", 1e-4, gt=0.0)
    lr_token: float = _help("Learning rate of the class tokens' embeddings.", 5e-4, gt=0.0)
    resolution: int = _help("Training resolution (pixels a side).", 512, ge=8, le=2048)
    per_class: bool = _help("One LoRA per class (DataDream's class-level variant).", False)
    workers: int = _help("Ray Train workers (DDP).", 1, ge=1)
    checkpoint_every: int = _help("Steps between checkpoints (a retried run resumes from the last).", 100, ge=1)
    seed: int = _help("Seed (the config's train.seed).", 0, ge=0, le=2**32 - 1)
    prompt: str = _help("Training prompt; {name} is the class token, {metaclass} the dataset's kind.", "photo of a {name} {metaclass}")
