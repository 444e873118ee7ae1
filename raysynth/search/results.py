"""Reading a finished search: the best trial, the weights the search learned, the summary
printed at the end, and the story its report tells."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from typing import Any


from raysynth.config import Config, dump_yaml, flatten_params
from raysynth.context import RunContext
from raysynth.outcome import FAILED, FINISHED, result_outcome, trial_outcome
from raysynth.search.space import Space, apply_params
from raysynth.search.weightings import is_weight_param
from raysynth.tracking.report import SearchStory

log = logging.getLogger(__name__)
# top_quartile_weights averages at least this many trials (the best quarter of fewer
# than 12 trials would be one or two: noise)
MIN_TOP_TRIALS = 3


@dataclass
class FinalResult:
    label: str
    test_acc: float
    val_acc: float
    weights: list[float] | None
    test_acc_std: float = 0.0
    confusion: list[list[int]] | None = None
    node: str = ""  # where its rank-0 worker ran (MLflow tags raysynth.node / raysynth.gpu_ids)
    gpu_ids: str = ""
    # the first seed's classifier (the model a search logs): its test accuracy and its
    # trained state ({"model": trainable weights, "probes": two-stage classifiers})
    model_test_acc: float | None = None
    state: dict | None = field(default=None, repr=False)


@dataclass
class WeightEffect:
    """What the finished trials say about one class's weight: ``effect`` is the change in
    validation accuracy from w_c = 0 to w_c = 1 (the other weights held), ``se`` its
    standard error; ``identified`` when the effect is at least ``IDENTIFIED_Z`` standard
    errors from zero, i.e. the search could tell whether the class's pool helps."""

    effect: float
    se: float
    identified: bool


# |effect| >= 2 standard errors: the search learned something about the weight
IDENTIFIED_Z = 2.0
RIDGE = 1e-2  # on standardised weights: keeps the fit defined when trials cluster


def weight_effects(results, epochs: int, classes: list[str], space: Space, context=None) -> dict[str, WeightEffect]:
    """A ridge fit of validation accuracy on the per-class weights over the finished
    trials, with the coefficients' standard errors (the sandwich form of ridge's
    covariance). Empty when there are fewer trials than classes + 3: too few to say."""
    import numpy as np

    full = _full(results, epochs)
    rows = [(space.class_weights(r.config, classes, context), float(r.metrics["val_acc"])) for r in full]
    rows = [(w, y) for w, y in rows if w is not None]
    n, c = len(rows), len(classes)
    if n < c + 3:
        return {}
    w = np.array([w for w, _ in rows], dtype=np.float64)
    y = np.array([y for _, y in rows], dtype=np.float64)
    scale = w.std(0)
    varied = scale > 1e-9
    z = np.zeros_like(w)
    z[:, varied] = (w[:, varied] - w[:, varied].mean(0)) / scale[varied]
    x = np.column_stack([np.ones(n), z])
    penalty = RIDGE * n * np.eye(c + 1)
    penalty[0, 0] = 0.0  # the intercept is not shrunk
    inverse = np.linalg.inv(x.T @ x + penalty)
    beta = inverse @ x.T @ y
    residual = y - x @ beta
    dof = max(n - c - 1, 1)
    sigma2 = float(residual @ residual) / dof
    cov = sigma2 * inverse @ (x.T @ x) @ inverse
    out = {}
    for i, name in enumerate(classes):
        if not varied[i]:  # a weight the search never moved says nothing
            out[name] = WeightEffect(0.0, float("inf"), False)
            continue
        effect, se = beta[i + 1] / scale[i], float(np.sqrt(max(cov[i + 1, i + 1], 0.0))) / scale[i]
        out[name] = WeightEffect(float(effect), se, bool(abs(effect) >= IDENTIFIED_Z * se and se > 0))
    return out


@dataclass
class SearchSummary:
    parent_run_id: str
    best_params: dict[str, Any]
    best_val_acc: float
    classes: list[str]
    quality: dict[str, str]
    finals: list[FinalResult] = field(default_factory=list)
    model_uri: str | None = None  # the best config's classifier as an MLflow model
    top_weights: dict[str, float] = field(default_factory=dict)
    effects: dict[str, WeightEffect] = field(default_factory=dict)
    best_weights: list[float] | None = None
    trials: int = 0
    seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        """The parent run's result metrics."""
        out = {"best_val_acc": self.best_val_acc, "trials": self.trials}
        for f in self.finals:
            out[f"test_acc/{f.label}"] = f.test_acc
            out[f"test_acc_std/{f.label}"] = f.test_acc_std
            if f.label == "best" and f.model_test_acc is not None:
                out["model_test_acc"] = f.model_test_acc  # the logged model's own (first seed)
        out.update({f"best_w/{c}": w for c, w in zip(self.classes, self.best_weights or [])})
        out.update({f"top_quartile_w/{c}": w for c, w in self.top_weights.items()})
        for c, e in self.effects.items():
            out[f"weight_effect/{c}"] = e.effect
            out[f"weight_identified/{c}"] = float(e.identified)
        return out


def _full(results, epochs: int) -> list:
    """Trials that finished (:mod:`raysynth.outcome`)."""
    return [r for r in results if result_outcome(r, epochs) == FINISHED]


def best_trial(results, epochs: int) -> tuple[dict[str, Any], float, int]:
    """(params, val_acc, trials) of the best trial that ran all epochs (ASHA-stopped
    trials are compared only if none finished: their values are not comparable)."""
    full = _full(results, epochs)
    done = [r for r in results if result_outcome(r, epochs) != FAILED]
    full = full or done
    if not full:
        raise RuntimeError("no trial reported a validation accuracy")
    best = max(full, key=lambda r: r.metrics["val_acc"])
    return best.config, float(best.metrics["val_acc"]), len(done)


def top_quartile_weights(results, epochs: int, classes: list[str], space: Space, context=None) -> dict[str, float]:
    """Mean weight per class over the best quarter of the finished trials: a steadier
    read of what the search learned than the single best trial, whose weights for a
    class that barely affects accuracy are noise."""
    full = sorted(_full(results, epochs), key=lambda r: r.metrics["val_acc"], reverse=True)
    top = [space.class_weights(r.config, classes, context) for r in full[: max(MIN_TOP_TRIALS, len(full) // 4)]]
    top = [w for w in top if w is not None]
    if not top:
        return {}
    return {c: sum(w[i] for w in top) / len(top) for i, c in enumerate(classes)}


def summarize(results, config: Config, context: RunContext, parent_run_id: str) -> tuple[SearchSummary, Config]:
    """What the trials found: the best trial (its params, its config with ties resolved and
    its class weights) and what the weights learned across trials (the top quarter's
    mean, each class's effect)."""
    epochs, classes, space, quality = config.train.epochs, list(context.classes), context.space, context.weights
    params, val_acc, trials = best_trial(results, epochs)
    best_config, weights = apply_params(config, params, classes, quality, space)
    summary = SearchSummary(parent_run_id, params, val_acc, classes, config.pool.quality, trials=trials, best_weights=weights)
    summary.top_weights = top_quartile_weights(results, epochs, classes, space, quality)
    summary.effects = weight_effects(results, epochs, classes, space, quality)
    return summary, best_config


def best_config_with_space(config: Config) -> Config:
    """The winner as a re-runnable file: its values, with an empty search space."""
    best = copy.deepcopy(config)
    best.search.space = {}
    return best


def format_summary(summary: SearchSummary) -> str:
    lines = [f"search finished: {summary.trials} trials in {summary.seconds:.0f} s, best val_acc {summary.best_val_acc:.4f}"]
    # per_class weights are listed below, class by class; group and quality coefficients stay here
    others = {k: v for k, v in flatten_params(summary.best_params).items() if not k.startswith("w/")}
    if others:
        lines.append("best config: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in others.items()))
    if summary.best_weights is not None:
        lines.append("learned per-class weights of the synthetic data (best trial; mean of the top quarter of trials;")
        lines.append("  effect: validation accuracy from w=0 to w=1 over the finished trials, ± its standard error):")
        for c, w in zip(summary.classes, summary.best_weights):
            q = summary.quality.get(c, "faithful")
            top = summary.top_weights.get(c)
            top_s = f"  top-quarter mean {top:.3f}" if top is not None else ""
            lines.append(f"  {c:>10s}  w={w:.3f}{top_s}  {_effect_text(summary.effects.get(c))}  ({q})")
    lines.append("test accuracy, mean ± std over seeds (retrained with Ray Train after the search, test split touched once):")
    for f in summary.finals:
        lines.append(f"  {f.label:<14s} {f.test_acc:.4f} ± {f.test_acc_std:.4f}")
    if summary.model_uri:
        best = next((f for f in summary.finals if f.label == "best"), None)
        acc = f", test accuracy {best.model_test_acc:.4f}" if best is not None and best.model_test_acc is not None else ""
        lines.append(f"model (best config, first seed{acc}): {summary.model_uri}  ->  raysynth predict --model-uri {summary.model_uri} IMAGES...")
    return "\n".join(lines)


def _effect_text(effect: WeightEffect | None) -> str:
    if effect is None:
        return "effect: too few trials to say"
    if not math.isfinite(effect.se):
        return "not identified (never varied)"
    verdict = "identified" if effect.identified else "not identified"
    return f"effect {effect.effect:+.3f} ± {effect.se:.3f}, {verdict}"


def search_story(summary: SearchSummary, results, config: Config, best_config: Config, context: RunContext, title: str) -> SearchStory:
    """What the report shows: weights, sample images, every trial's score, the finals."""
    best_yaml = dump_yaml(best_config_with_space(best_config))
    classes = list(context.classes)
    real, synthetic = context.samples(best_config.pool, per_class=4)
    epochs = config.train.epochs
    ended = [r for r in results if r.metrics and "val_acc" in r.metrics]
    finished = [trial_outcome(r.metrics, epochs) == FINISHED for r in ended]
    rows = []
    for r, full in zip(ended, finished):
        if full:
            flat = {k: v for k, v in flatten_params(r.config).items() if not is_weight_param(k)}
            rows.append({**{k: v for k, v in flat.items() if isinstance(v, (int, float))}, "val_acc": r.metrics["val_acc"]})
    if context.weights is not None:
        quality = [f"q={q:+.2f}" for q in context.weights.quality]
    else:
        quality = [config.pool.quality.get(c, "faithful") for c in classes]
    best_final = next((f for f in summary.finals if f.label == "best"), None)
    return SearchStory(
        title=title,
        summary_text=format_summary(summary),
        classes=classes,
        best_weights=summary.best_weights,
        top_weights=[summary.top_weights[c] for c in classes] if summary.top_weights else None,
        quality_labels=quality,
        real_images=real,
        synthetic_images=synthetic,
        trial_scores=[float(r.metrics["val_acc"]) for r in ended],
        trial_finished=finished,
        trial_params=rows,
        confusion=best_final.confusion if best_final else None,
        best_config_yaml=best_yaml,
        finals=[{"label": f.label, "test_acc": f.test_acc, "test_acc_std": f.test_acc_std, "val_acc": f.val_acc} for f in summary.finals],
    )


def parameter_importances(study_storage: str, study_name: str) -> dict[str, float]:
    """Optuna's parameter importances (fANOVA) of a search's study; empty when there is
    no study or too few complete trials to say."""
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=study_storage)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) < 2:
            return {}
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study).items()}
    except (KeyError, ValueError, RuntimeError) as exc:  # no such study; a constant objective
        log.info("no parameter importances: %s", exc)
        return {}
