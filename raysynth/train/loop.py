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
  projection) are trained in lockstep with the representation objectives; after each
  epoch the reported accuracy is the nearest-class-mean classifier on frozen features
  (the classifier SupCon's objective optimises); after the last epoch ``n_classif``
  linear classifiers per encoder are trained on frozen features of the real shots, and
  the reported accuracy is the mean over the ``n_contr × n_classif`` classifiers, with
  its standard deviation.

An epoch is ``steps_per_epoch`` steps (the real set is tiny, so "a pass over the data"
would not be comparable between real-only and mixed training).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from raysynth.config import PartitionConfig, TrainConfig
from raysynth.data.augment import random_affine
from raysynth.losses import LossBatch, Objective, OnlineKMeans, parse_loss

log = logging.getLogger(__name__)
PROBE_VIEWS = 8  # augmented views of each real shot the frozen-feature classifiers see


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


@torch.no_grad()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> tuple[float, torch.Tensor]:
    """(accuracy, predictions) of ``model`` on a tensor dataset."""
    was_training = model.training
    model.eval()
    preds = torch.cat([model(images[i : i + batch_size]).argmax(-1) for i in range(0, len(images), batch_size)])
    model.train(was_training)
    return (preds == labels).float().mean().item(), preds


@torch.no_grad()
def encode(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Frozen encoder features of a FewShotClassifier (eval mode)."""
    was_training = model.training
    model.eval()
    out = torch.cat([model.features(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    model.train(was_training)
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
        self.seed = config.seed * 1000 + rank * 7919 + index * 104729
        self.probes: list[dict] = []

    @property
    def probes(self) -> list[dict]:
        return getattr(self.eval_model, "probes", [])

    @probes.setter
    def probes(self, value: list[dict]) -> None:
        # kept on the model so whoever holds it can score the two-stage classifiers
        self.eval_model.probes = value

    def state_dict(self) -> dict:
        return {
            "model": trainable_state(self.eval_model),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "probes": self.probes,
        }

    def load_state_dict(self, state: dict) -> None:
        load_trainable_state(self.eval_model, state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.probes = state.get("probes", [])


def _partitions(data: TrainData, idx, sidx, online: OnlineKMeans | None):
    if online is not None:
        part_syn = online.partial_fit(data.syn_vectors[sidx]) if sidx is not None else None
        return online.assign(data.real_vectors[idx]), part_syn
    if data.real_part is None:
        return None, None
    return data.real_part[idx], (data.syn_part[sidx] if sidx is not None else None)


def _step(run: _Run, data: TrainData, config: TrainConfig, objectives, weights, g, online) -> dict[str, torch.Tensor]:
    idx = torch.randint(0, len(data.real_labels), (config.batch_real,), generator=g)
    images = random_affine(data.real_images[idx], g)
    labels = data.real_labels[idx]
    sidx = None
    if data.has_synthetic and weights.sum() > 0:
        sidx = torch.randint(0, len(data.syn_images), (config.batch_syn,), generator=g)
        images = torch.cat([images, random_affine(data.syn_images[sidx], g)])
    n = len(labels)
    if any(o.needs_projection for o in objectives):
        logits, proj = run.model(images, return_projection=True)
    else:
        logits, proj = run.model(images), None
    part_real, part_syn = _partitions(data, idx, sidx, online)
    batch = LossBatch(
        logits_real=logits[:n],
        y_real=labels,
        class_weights=weights,
        logits_syn=logits[n:] if sidx is not None else None,
        soft_syn=data.syn_soft_labels[sidx] if sidx is not None else None,
        syn_class=data.syn_class[sidx] if sidx is not None else None,
        proj_real=proj[:n] if proj is not None else None,
        proj_syn=proj[n:] if proj is not None and sidx is not None else None,
        part_real=part_real,
        part_syn=part_syn,
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
    return {"loss": loss.detach(), **{k: v.detach() for k, v in terms.items()}}


@torch.no_grad()
def nearest_mean_accuracy(model: nn.Module, data: TrainData) -> float:
    """Validation accuracy of the nearest-class-mean classifier on frozen features."""
    from raysynth.losses import class_mean_prototypes

    means = class_mean_prototypes(encode(model, data.real_images), data.real_labels, data.num_classes)
    val = F.normalize(encode(model, data.val_images), dim=-1)
    return ((val @ means.T).argmax(1) == data.val_labels).float().mean().item()


def train_probes(model: nn.Module, data: TrainData, config: TrainConfig, run_index: int) -> list[dict]:
    """UniCon's classifier stage: ``n_classif`` linear classifiers on frozen features of
    augmented real shots, each with its own seed (init and views)."""
    probes = []
    for j in range(config.n_classif):
        g = torch.Generator().manual_seed(config.seed * 7907 + run_index * 131 + j)
        views = torch.cat([random_affine(data.real_images, g) for _ in range(PROBE_VIEWS)])
        feats = encode(model, views)
        labels = data.real_labels.repeat(PROBE_VIEWS)
        torch.manual_seed(config.seed * 7907 + run_index * 131 + j)
        head = nn.Linear(feats.shape[1], data.num_classes)
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.probe_lr, weight_decay=config.weight_decay)
        for _ in range(config.probe_steps):
            loss = F.cross_entropy(head(feats), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        probes.append({k: v.detach().clone() for k, v in head.state_dict().items()})
    return probes


@torch.no_grad()
def probe_accuracies(models: list[nn.Module], probes: list[list[dict]], images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Accuracy of every (encoder, classifier) pair of the two-stage protocol."""
    accs = []
    for model, heads in zip(models, probes):
        feats = encode(model, images)
        for state in heads:
            logits = F.linear(feats, state["weight"], state["bias"])
            accs.append((logits.argmax(1) == labels).float().mean())
    return torch.stack(accs)


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
) -> EpochMetrics | None:
    """Train in place; returns the last epoch's metrics (None if no epoch ran).

    ``model`` is one model (joint) or ``n_contr`` models (two_stage). ``state`` (from a
    checkpoint) resumes a run. ``on_epoch_end`` receives the metrics and a plain state
    dict to checkpoint. ``rank`` decorrelates batch sampling across data-parallel
    workers; ``eval_model`` is the unwrapped model (DDP). ``objectives`` defaults to
    ``ce``; ``partition`` is needed for the online k-means.
    """
    models = model if isinstance(model, list) else [model]
    eval_models = eval_model if isinstance(eval_model, list) else [eval_model or m for m in models]
    objectives = objectives if objectives is not None else parse_loss(None)
    if protocol == "two_stage":
        objectives = [o for o in objectives if o.representation]
    runs = [_Run(m, e, config, i, rank) for i, (m, e) in enumerate(zip(models, eval_models))]
    weights = class_weights if class_weights is not None else torch.ones(data.num_classes)

    online = None
    if data.real_vectors is not None and data.has_synthetic:
        seed = partition.seed if partition else 0
        online = OnlineKMeans.from_data(data.syn_vectors, data.num_partitions, seed)
    first_epoch = 0
    if state is not None:
        for run, run_state in zip(runs, state["runs"]):
            run.load_state_dict(run_state)
        if online is not None and state.get("online_kmeans"):
            online.load_state_dict(state["online_kmeans"])
        first_epoch = state["epoch"]
    generators = [torch.Generator().manual_seed(run.seed + first_epoch) for run in runs]

    metrics = None
    for m in models:
        m.train()
    for epoch in range(first_epoch, config.epochs):
        start = time.perf_counter()
        totals: dict[str, float] = {}
        for run, g in zip(runs, generators):
            refresh_prototypes(run.eval_model, data)
            for step in range(config.steps_per_epoch):
                try:
                    values = _step(run, data, config, objectives, weights, g, online)
                except FloatingPointError as exc:
                    # found at the step it appears, not at the end of the run
                    raise FloatingPointError(f"epoch {epoch + 1}, step {step + 1}: {exc}") from None
                for name, value in values.items():
                    totals[name] = totals.get(name, 0.0) + value.item()
        scale = config.steps_per_epoch * len(runs)
        totals = {k: v / scale for k, v in totals.items()}
        loss = totals.pop("loss")
        std = None
        if protocol == "two_stage":
            last = epoch + 1 == config.epochs
            if last:
                for i, run in enumerate(runs):
                    run.probes = train_probes(run.eval_model, data, config, i)
                accs = probe_accuracies([r.eval_model for r in runs], [r.probes for r in runs], data.val_images, data.val_labels)
                val_acc, std = accs.mean().item(), (accs.std().item() if len(accs) > 1 else 0.0)
            else:
                val_acc = sum(nearest_mean_accuracy(r.eval_model, data) for r in runs) / len(runs)
        else:
            # n_contr > 1: the same config trained with n_contr seeds; the value is the mean
            accs = []
            for run in runs:
                refresh_prototypes(run.eval_model, data)
                accs.append(evaluate(run.eval_model, data.val_images, data.val_labels)[0])
            val_acc = sum(accs) / len(accs)
            std = torch.tensor(accs).std().item() if len(accs) > 1 else None
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
    return metrics


def model_accuracies(models: nn.Module | list[nn.Module], images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Accuracy of every trained classifier on a held-out split: each model's head
    (joint), or every frozen-feature classifier (two_stage: models carry ``probes``)."""
    models = models if isinstance(models, list) else [models]
    if getattr(models[0], "probes", None):
        return probe_accuracies(models, [m.probes for m in models], images, labels).tolist()
    return [evaluate(m, images, labels)[0] for m in models]


@torch.no_grad()
def model_predictions(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Predictions of a trained model: its head, or its first frozen-feature classifier."""
    probes = getattr(model, "probes", None)
    if probes:
        return F.linear(encode(model, images), probes[0]["weight"], probes[0]["bias"]).argmax(1)
    return evaluate(model, images, torch.zeros(len(images), dtype=torch.long))[1]


def confusion_matrix(labels: torch.Tensor, preds: torch.Tensor, num_classes: int) -> list[list[int]]:
    m = torch.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return m.view(num_classes, num_classes).tolist()


def model_accuracy(models: nn.Module | list[nn.Module], images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean of :func:`model_accuracies`."""
    accs = model_accuracies(models, images, labels)
    return sum(accs) / len(accs)
