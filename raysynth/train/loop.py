"""The few-shot training loop: plain torch, testable and runnable without Ray.

One step draws ``batch_real`` of the few real shots (cycled) and ``batch_syn`` synthetic
images, both through the same random affine warp, runs the model once, and minimises
the sum of the selected objectives' terms (``loss`` section: ce, bound, unicon, supcon,
sync, prototype — see :mod:`raysynth.losses`). Each term is logged on its own.

Two protocols:

* ``joint`` — one model, every objective summed, validation accuracy of the model's own
  head after each epoch; with ``n_contr > 1`` the same config is trained with n_contr
  seeds in lockstep and the reported value is their mean (with its spread).
* ``two_stage`` — UniCon's protocol (its Algorithm 1): ``n_contr`` encoders (LoRA +
  projection) are trained in lockstep with the representation objectives; the
  evaluation (nearest class mean, then classifiers on frozen features) is in
  :mod:`raysynth.train.two_stage`. The trained classifiers come back in the
  :class:`TrainResult`.

An epoch is ``steps_per_epoch`` steps, or with ``'pass'`` one pass over the synthetic
pool (the papers' epoch over the pooled set, in which the few real shots repeat; over the
real shots without a pool).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.config import PartitionConfig, TrainConfig
from raysynth.data.augment import augment, mix_step
from raysynth.losses import LossBatch, Objective, OnlineKMeans, parse_loss
from raysynth.losses.memory import OutputMemory
from raysynth.train.evaluate import Probes, as_input, device_of, encode, evaluate
from raysynth.train.draws import EpochDraws
from raysynth.train.two_stage import evaluate_two_stage

log = logging.getLogger(__name__)
# Batch-order seed of run i on data-parallel rank r: train.seed * 1000 + r * 7919 +
# i * 104729 (primes far apart), so no two ranks or repeats draw the same batches.
SEED_STRIDE, RANK_STRIDE, REPEAT_STRIDE = 1000, 7919, 104729


@dataclass
class TrainData:
    real_images: torch.Tensor
    real_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    num_classes: int
    syn_images: torch.Tensor | None = None
    syn_soft_labels: torch.Tensor | None = None
    syn_class: torch.Tensor | None = None
    # static partitions: the k-means region of every real and synthetic image
    real_part: torch.Tensor | None = None
    syn_part: torch.Tensor | None = None
    # online partitions: the vectors the mini-batch k-means clusters, and K
    real_vectors: torch.Tensor | None = None
    syn_vectors: torch.Tensor | None = None
    num_partitions: int = 0

    @property
    def has_synthetic(self) -> bool:
        return self.syn_images is not None and len(self.syn_images) > 0


@dataclass
class EpochMetrics:
    epoch: int
    val_acc: float
    loss: float
    seconds: float
    terms: dict[str, float] = field(default_factory=dict)  # each objective term, weighted
    val_acc_std: float | None = None  # two-stage: spread over the n_contr x n_classif classifiers

    def as_dict(self) -> dict:
        out = {"epoch": self.epoch, "val_acc": self.val_acc, "loss": self.loss, "seconds": self.seconds}
        out.update({f"loss_{k}": v for k, v in self.terms.items()})
        if self.val_acc_std is not None:
            out["val_acc_std"] = self.val_acc_std
        return out


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def refresh_prototypes(model: nn.Module, data: TrainData) -> None:
    """A class-means prototype head follows the encoder: recomputed from the real shots."""
    head = getattr(model, "head", None)
    if getattr(head, "kind", None) == "class_means":
        head.set_class_means(encode(model, data.real_images), data.real_labels)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a checkpoint must hold to resume ``model``: the parameters that train (LoRA,
    head, projection) and the buffers. Frozen weights are left out: they are rebuilt
    identically from the config, and for a LoRA-adapted CLIP they are nearly all of it."""
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k not in frozen}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`trainable_state` (or a full state dict) into a freshly built model."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    bad = [k for k in missing if k not in frozen]
    if unexpected or bad:
        raise RuntimeError(
            f"checkpoint does not fit the model: {len(bad)} trainable tensors missing (e.g. {bad[:2]}), "
            f"{len(unexpected)} unexpected (e.g. {list(unexpected)[:2]})"
        )


class _Run:
    """One model under training: its optimiser, schedule and batch sampler."""

    def __init__(self, model: nn.Module, eval_model: nn.Module, config: TrainConfig, index: int, rank: int):
        self.model, self.eval_model = model, eval_model
        self.optimizer = build_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=config.epochs * config.steps_per_epoch
        )
        self.seed = config.seed * SEED_STRIDE + rank * RANK_STRIDE + index * REPEAT_STRIDE
        self.probes: list[dict] = []  # two-stage: this encoder's frozen-feature classifiers
        self.memory: OutputMemory | None = None  # partition.scope 'all': every sample's latest output
        self.draws: tuple[EpochDraws, EpochDraws | None] | None = None  # (real, synthetic), made at the first step

    def state_dict(self) -> dict:
        return {
            "model": trainable_state(self.eval_model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "probes": self.probes,
            "memory": self.memory.state_dict() if self.memory is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        load_trainable_state(self.eval_model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.probes = state.get("probes", [])
        if self.memory is not None and state.get("memory"):
            self.memory.load_state_dict(state["memory"])


def _partitions(data: TrainData, idx, sidx, online: OnlineKMeans | None):
    if online is not None:
        part_syn = online.partial_fit(data.syn_vectors[sidx]) if sidx is not None else None
        return online.assign(data.real_vectors[idx]), part_syn
    if data.real_part is None:
        return None, None
    return data.real_part[idx], (data.syn_part[sidx] if sidx is not None else None)


def _step(run: _Run, data: TrainData, config: TrainConfig, objectives, weights, g, online, step: int) -> dict[str, torch.Tensor]:
    """Optimiser step number ``step`` of the run (counted from its start, over epochs)."""
    # the images: passes over the real shots and over the pool (raysynth.train.draws);
    # augmentation draws on the CPU generator; the batch becomes float on the model's device
    device = weights.device
    # every w_c = 0 still draws synthetic rows for an objective that uses them unweighted
    # or as negatives (UniCon): only the class-weighted terms of those classes vanish
    with_syn = data.has_synthetic and any(o.uses_synthetic(weights) for o in objectives)
    if run.draws is None:
        run.draws = (EpochDraws(len(data.real_labels), run.seed, "real"),
                     EpochDraws(len(data.syn_images), run.seed, "syn") if data.has_synthetic else None)
    idx, sidx = run.draws[0].take(step, config.batch_real), None
    images = augment(config.augment, as_input(data.real_images[idx], device), g)
    labels = data.real_labels[idx].to(device)
    syn_images = soft_syn = None
    if with_syn:
        sidx = run.draws[1].take(step, config.batch_syn)
        syn_images = augment(config.augment, as_input(data.syn_images[sidx], device), g)
        soft_syn = data.syn_soft_labels[sidx].to(device)
    # the drawn rows' regions (static, or the online k-means fed this batch's pool rows)
    part_real, part_syn = (p.to(device) if p is not None else None for p in _partitions(data, idx, sidx, online))
    # CutMix/Mixup on a fraction of the steps: soft targets for the cross-entropies
    images, soft_real, mixed_syn, mixed_soft = mix_step(
        config.mix, config.mix_alpha, config.mix_p, images, F.one_hot(labels, data.num_classes).float(),
        syn_images if config.mix_synthetic else None, soft_syn if config.mix_synthetic else None, g)
    if mixed_syn is not None:
        syn_images, soft_syn = mixed_syn, mixed_soft
    if syn_images is not None:
        images = torch.cat([images, syn_images])
    n = len(labels)
    if any(o.needs_projection for o in objectives):
        logits, proj = run.model(images, return_projection=True)
    else:
        logits, proj = run.model(images), None
    batch = LossBatch(
        logits_real=logits[:n],
        y_real=labels,
        class_weights=weights,
        logits_syn=logits[n:] if sidx is not None else None,
        soft_syn=soft_syn,
        syn_class=data.syn_class[sidx].to(device) if sidx is not None else None,
        proj_real=proj[:n] if proj is not None else None,
        proj_syn=proj[n:] if proj is not None and sidx is not None else None,
        part_real=part_real,
        part_syn=part_syn,
        soft_real=soft_real,
        memory=run.memory if sidx is not None else None,
        real_index=idx,
        syn_index=sidx,
        pool_images=len(data.syn_images) if data.has_synthetic else 0,
    )
    terms: dict[str, torch.Tensor] = {}
    for objective in objectives:
        for name, value in objective.terms(batch).items():
            terms[name] = terms[name] + value if name in terms else value
    loss = sum(terms.values())
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {loss.item()} (terms: { {k: v.item() for k, v in terms.items()} })")
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.scheduler.step()
    if run.memory is not None and sidx is not None and part_real is not None:
        run.memory.store("real", idx, logits[:n], part_real)
        run.memory.store("syn", sidx, logits[n:], part_syn)
    return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}


@dataclass
class TrainResult:
    """What a training run leaves: the last epoch's metrics (None if no epoch ran: a
    run resumed from its final checkpoint) and, two-stage, each encoder's classifiers."""

    metrics: EpochMetrics | None
    probes: Probes = field(default_factory=list)


def epoch_steps(config: TrainConfig, data: TrainData) -> int:
    """``train.steps_per_epoch`` as a number: 'pass' is one pass over the synthetic pool
    (over the real shots when there is none), ``batch_syn`` (``batch_real``) per step."""
    if config.steps_per_epoch != "pass":
        return int(config.steps_per_epoch)
    if data.has_synthetic:
        return -(-len(data.syn_images) // config.batch_syn)
    return -(-len(data.real_labels) // config.batch_real)


def train_few_shot(
    model: nn.Module | list[nn.Module],
    data: TrainData,
    config: TrainConfig,
    class_weights: torch.Tensor | None = None,
    on_epoch_end: Callable[[EpochMetrics, dict], None] | None = None,
    state: dict | None = None,
    rank: int = 0,
    eval_model: nn.Module | list[nn.Module] | None = None,
    objectives: list[Objective] | None = None,
    protocol: str = "joint",
    partition: PartitionConfig | None = None,
) -> TrainResult:
    """Train in place; returns the last epoch's metrics and the two-stage classifiers.

    ``model`` is one model (joint) or ``n_contr`` models (two_stage). ``state`` (from a
    checkpoint) resumes a run. ``on_epoch_end`` receives the metrics and a plain state
    dict to checkpoint. ``rank`` decorrelates batch sampling across data-parallel
    workers; ``eval_model`` is the unwrapped model (DDP). ``objectives`` defaults to
    ``ce``; ``partition`` is needed for the online k-means.
    """
    config = replace(config, steps_per_epoch=epoch_steps(config, data))
    models = model if isinstance(model, list) else [model]
    eval_models = eval_model if isinstance(eval_model, list) else [eval_model or m for m in models]
    objectives = objectives if objectives is not None else parse_loss(None)
    if protocol == "two_stage":
        objectives = [o for o in objectives if o.representation]
    runs = [_Run(m, e, config, i, rank) for i, (m, e) in enumerate(zip(models, eval_models))]
    device = device_of(eval_models[0])  # where the models are: every batch goes there
    weights = (class_weights if class_weights is not None else torch.ones(data.num_classes)).to(device)
    online = None
    if data.real_vectors is not None and data.has_synthetic:
        online = OnlineKMeans.from_data(data.syn_vectors, data.num_partitions, partition.seed if partition else 0)
    if partition is not None and partition.over_all_data and data.has_synthetic and any(o.uses_output_memory for o in objectives):
        for run in runs:
            run.memory = OutputMemory(len(data.real_labels), len(data.syn_images), data.num_classes, device,
                                      syn_class=data.syn_class)
    first_epoch = _restore(runs, online, state)
    generators = [torch.Generator().manual_seed(run.seed + first_epoch) for run in runs]

    metrics = None
    for m in models:
        m.train()
    for epoch in range(first_epoch, config.epochs):
        start = time.perf_counter()
        totals = _train_epoch(runs, generators, data, config, objectives, weights, online, epoch)
        loss = totals.pop("loss")
        if protocol == "two_stage":
            val_acc, std, probes = evaluate_two_stage([r.eval_model for r in runs], data, config, epoch + 1 == config.epochs)
            for run, heads in zip(runs, probes or []):
                run.probes = heads
        else:
            val_acc, std = _evaluate_joint(runs, data)
        metrics = EpochMetrics(epoch + 1, val_acc, loss, time.perf_counter() - start, totals, std)
        log.debug("epoch %d val_acc %.4f loss %.4f (%.1f s)", epoch + 1, val_acc, loss, metrics.seconds)
        if on_epoch_end is not None:
            on_epoch_end(
                metrics,
                {
                    "runs": [run.state_dict() for run in runs],
                    "online_kmeans": online.state_dict() if online is not None else None,
                    "epoch": epoch + 1,
                    "protocol": protocol,
                },
            )
    return TrainResult(metrics, [run.probes for run in runs])


def _restore(runs: list[_Run], online: OnlineKMeans | None, state: dict | None) -> int:
    """Load a checkpoint's state into the runs; returns the epoch to continue from."""
    if state is None:
        return 0
    for run, run_state in zip(runs, state["runs"]):
        run.load_state_dict(run_state)
    if online is not None and state.get("online_kmeans"):
        online.load_state_dict(state["online_kmeans"])
    return state["epoch"]


def _train_epoch(runs, generators, data, config, objectives, weights, online, epoch: int) -> dict[str, float]:
    """One epoch of every run; the mean of the loss and of each term over steps and runs."""
    totals: dict[str, float] = {}
    for run, g in zip(runs, generators):
        refresh_prototypes(run.eval_model, data)
        for step in range(config.steps_per_epoch):
            try:
                values = _step(run, data, config, objectives, weights, g, online, epoch * config.steps_per_epoch + step)
            except FloatingPointError as exc:
                # found at the step it appears, not at the end of the run
                raise FloatingPointError(f"epoch {epoch + 1}, step {step + 1}: {exc}") from None
            for name, value in values.items():
                totals[name] = totals.get(name, 0.0) + value.item()
    scale = config.steps_per_epoch * len(runs)
    return {k: v / scale for k, v in totals.items()}


def _evaluate_joint(runs: list[_Run], data: TrainData) -> tuple[float, float | None]:
    """n_contr > 1: the same config trained with n_contr seeds; the value is their mean."""
    accs = []
    for run in runs:
        refresh_prototypes(run.eval_model, data)
        accs.append(evaluate(run.eval_model, data.val_images, data.val_labels)[0])
    std = torch.tensor(accs).std().item() if len(accs) > 1 else None
    return sum(accs) / len(accs), std
