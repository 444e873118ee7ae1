"""Search efficiency: how many trials each searcher needs to come near the best value.

Every searcher (raysynth's own, :mod:`raysynth.search.searchers`, driven through the Ray
Tune Searcher interface — suggest / on_trial_complete — in-process, one trial at a time)
runs ``--trials`` trials per searcher seed on one of three objectives:

* ``features`` (default): the demo's search (search_spaces/digits.yaml: the five
  per-class weights, classes "five" and "six" poisoned) with the backbone frozen. The
  pretrained backbone's features of every real shot, synthetic image and validation
  image are computed once; a trial trains only the linear head, with the demo's loss
  (CE(real) + 1.5 · w_c-weighted soft CE(synthetic), logit adjustment) for the demo's
  epochs x steps and batch sizes at ``--head-lr`` (2e-2: the demo's 2e-3 leaves a head
  trained from scratch on frozen features under-fit, oracle weights 0.689 vs 0.764),
  ``train.n_contr`` seeds averaged, and reports validation accuracy. The landscape keeps
  the task's structure (printed first: oracle weights (0, 0, 1, 1, 1) 0.764, every weight
  1 0.515, no synthetic data 0.517, the poisoned pools only 0.407). A trial takes ~0.1 s, so ≥ 60 trials x ≥ 5 seeds per searcher fit in
  minutes. Left out: LoRA adapting the encoder, and the random affine augmentation
  (frozen features are computed once) — the per-class weights act on the head alone.
* ``branin``: scikit-optimize's own benchmark function (two dimensions, minimum 0.397887),
  maximised as −branin.
* ``full``: real trials (LoRA + head, ``--epochs`` each, no early stopping): what the
  search runs, ~10 s a trial, so only small budgets fit.

For every run the script finds the first trial whose best-so-far value is within
``--tolerance`` of the best value any run of any searcher found (branin: of the known
optimum), and prints the median over seeds per searcher and its ratio to random (goal for
the default searcher: <= 0.5). A run that never gets there counts as its budget + 1, so
a ratio against a random search that never got there is only a bound: ``--random-trials``
gives random search a larger budget (its trials are the cheap ones to ask).

    .venv/bin/python benchmarks/search_efficiency.py [--mode features|branin|full] [--seeds 5] [--trials 60] [--random-trials 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing as mp
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ALGORITHMS = ("random", "optuna-tpe", "optuna-gp", "skopt-gp")
BRANIN_MIN = 0.397887
POISONED = "pool.quality={five: counter, six: counter}"  # five's images are sixes, six's fives
TOLERANCE = {"features": 0.01, "full": 0.01, "branin": 0.1}  # 1 accuracy point; 0.1 in branin's value


def _config(epochs: int | None):
    from raysynth.validate import load_config

    # its own fixed task (five and six poisoned; the figures in the README are of it)
    task = [POISONED] + ([f"train.epochs={epochs}"] if epochs else [])
    return load_config(REPO / "search_spaces" / "digits.yaml", task)


def _searcher(name: str, seed: int, initial: int, max_epochs: int):
    from raysynth.search.searchers import SearcherSpec, build_searcher
    from raysynth.search.searchers.optuna_base import fidelity_aware_optuna_search

    if name == "random":
        # Optuna's RandomSampler behind the same Searcher interface (Tune's
        # BasicVariantGenerator draws the same uniform points but is not a Searcher)
        import optuna

        return fidelity_aware_optuna_search()(
            metric="val_acc", mode="max", sampler=optuna.samplers.RandomSampler(seed=seed), max_epochs=max_epochs, seed=seed
        )
    return build_searcher(name, SearcherSpec("val_acc", "max", seed, max_epochs, initial))


def branin(x1: float, x2: float) -> float:
    a, b, c, r, s, t = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return a * (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * math.cos(x1) + s


class FeatureTask:
    """The demo's objective on frozen features: only the linear head trains."""

    def __init__(self, config):
        import torch

        from raysynth.losses import parse_loss
        from raysynth.prepare import prepare
        from raysynth.train.data import train_data
        from raysynth.train.evaluate import encode
        from raysynth.train.model import build_model

        self.config = config
        context = prepare(config)  # cached before the workers start: a few file checks
        self.classes = list(context.classes)
        data = train_data(config, context, [])
        backbone = build_model(config, context, with_objectives=False)
        self.real, self.val = encode(backbone, data.real_images), encode(backbone, data.val_images)
        self.syn = encode(backbone, data.syn_images)
        self.real_labels, self.val_labels = data.real_labels, data.val_labels
        self.soft_syn, self.syn_class = data.syn_soft_labels, data.syn_class
        self.objectives = parse_loss(config.loss)
        self.torch = torch

    def __call__(self, params: dict) -> float:
        from raysynth.search.space import apply_params

        return self.score(apply_params(self.config, params, self.classes)[1])

    def score(self, weights: list[float]) -> float:
        """Validation accuracy of heads trained with these per-class weights."""
        from raysynth.losses import LossBatch
        from raysynth.train.model import REPEAT_SEED_STRIDE

        torch, t = self.torch, self.config.train
        w = torch.tensor(weights, dtype=torch.float32)
        accs = []
        for repeat in range(t.n_contr):
            seed = t.seed + REPEAT_SEED_STRIDE * repeat  # the seeds raysynth's own repeats use
            g = torch.Generator().manual_seed(seed)
            head = torch.nn.Linear(self.real.shape[1], len(self.classes))
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                head.reset_parameters()
            optimizer = torch.optim.AdamW(head.parameters(), lr=t.lr, weight_decay=t.weight_decay)
            for _ in range(t.epochs * t.steps_per_epoch):
                r = torch.randint(len(self.real), (min(t.batch_real, len(self.real)),), generator=g)
                s = torch.randint(len(self.syn), (t.batch_syn,), generator=g)
                batch = LossBatch(head(self.real[r]), self.real_labels[r], w, head(self.syn[s]), self.soft_syn[s], self.syn_class[s],
                                  pool_images=len(self.syn))
                loss = sum(v for o in self.objectives for v in o.terms(batch).values())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                accs.append((head(self.val).argmax(1) == self.val_labels).float().mean().item())
        return sum(accs) / len(accs)


def _objective(mode: str, epochs: int | None, head_lr: float):
    """(the Tune search space, value of a trial's params) for a mode."""
    if mode == "branin":
        from ray import tune

        return {"x1": tune.uniform(-5.0, 10.0), "x2": tune.uniform(0.0, 15.0)}, lambda p: -branin(p["x1"], p["x2"])
    from raysynth.prepare import prepare
    from raysynth.search.space import apply_params, parse_space

    config = _config(epochs)
    context = prepare(config)  # cached before the workers start: a few file checks
    classes = list(context.classes)
    space = parse_space(config.search.space, config).to_tune(classes)
    if mode == "features":
        return space, FeatureTask(dataclasses.replace(config, train=dataclasses.replace(config.train, lr=head_lr)))
    from raysynth.train.session import train_in_process

    def full(params: dict) -> float:
        trial, weights = apply_params(config, params, classes)
        return train_in_process(trial, weights, context)[0].metrics.val_acc

    return space, full


def landscape(head_lr: float) -> None:
    """The frozen-feature objective at the corners that tell its shape (and, for the
    head's learning rate, the oracle at the demo's 2e-3)."""
    base = _config(None)
    task = FeatureTask(dataclasses.replace(base, train=dataclasses.replace(base.train, lr=head_lr)))
    corners = {"oracle (0, 0, 1, 1, 1)": [0, 0, 1, 1, 1], "every weight 1": [1] * 5, "no synthetic data": [0] * 5,
               "the poisoned pools only (1, 1, 0, 0, 0)": [1, 1, 0, 0, 0]}
    print(f"frozen-feature objective, head lr {head_lr:g}: " + ", ".join(f"{k} {task.score(w):.3f}" for k, w in corners.items()))
    slow = FeatureTask(dataclasses.replace(base, train=dataclasses.replace(base.train, lr=2e-3)))
    print(f"  (the oracle with the demo's lr 2e-3: {slow.score([0, 0, 1, 1, 1]):.3f})", flush=True)


def run_one(job: tuple) -> tuple[str, int, list[float], float]:
    mode, name, seed, trials, epochs, initial, head_lr = job
    import torch

    torch.set_num_threads(1)
    space, value = _objective(mode, epochs, head_lr)
    searcher = _searcher(name, seed, initial, 1)
    searcher.set_search_properties("val_acc", "max", space)
    scores, start = [], time.perf_counter()
    for i in range(trials):
        trial_id = f"{name}-{seed}-{i}"
        params = searcher.suggest(trial_id)
        scores.append(value(params))
        searcher.on_trial_complete(trial_id, {"val_acc": scores[-1], "epoch": 1, "training_iteration": 1})
    return name, seed, scores, time.perf_counter() - start


def trials_to_reach(scores: list[float], target: float) -> int:
    best = float("-inf")
    for i, s in enumerate(scores):
        best = max(best, s)
        if best >= target:
            return i + 1
    return len(scores) + 1  # never reached: counted as one more than the budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("features", "branin", "full"), default="features")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: digits.yaml's)")
    parser.add_argument("--initial", type=int, default=8, help="random points before the model-based searchers model")
    parser.add_argument("--tolerance", type=float, default=None, help="default: 1 accuracy point; branin 0.1")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--random-trials", type=int, default=0, help="trials of random search (default: --trials)")
    parser.add_argument("--head-lr", type=float, default=2e-2, help="features mode: the linear head's learning rate")
    args = parser.parse_args()
    tolerance = args.tolerance if args.tolerance is not None else TOLERANCE[args.mode]

    if args.mode != "branin":
        from raysynth.prepare import prepare

        prepare(_config(args.epochs))  # backbone and pool, cached, before the workers start
    if args.mode == "features":
        landscape(args.head_lr)
    # random search is cheap to ask: it may run longer (--random-trials), so that its
    # median is measured where the model-based searchers' budget would leave it "not reached"
    budget = {name: args.trials for name in ALGORITHMS} | {"random": max(args.trials, args.random_trials)}
    jobs = [(args.mode, name, seed, budget[name], args.epochs, args.initial, args.head_lr) for seed in range(args.seeds) for name in ALGORITHMS]
    start = time.perf_counter()
    results = []
    with mp.get_context("spawn").Pool(args.jobs) as pool:
        for name, seed, scores, seconds in pool.imap_unordered(run_one, jobs):
            results.append((name, seed, scores))
            print(f"[{time.perf_counter() - start:5.0f} s] {name} seed {seed}: best {max(scores):.4f} after {len(scores)} trials ({seconds:.0f} s)", flush=True)

    best = -BRANIN_MIN if args.mode == "branin" else max(max(scores) for _, _, scores in results)
    target = best - tolerance
    what = "branin's minimum" if args.mode == "branin" else "best validation accuracy found by any run"
    print(f"\n{args.mode}: {what} {abs(best):.4f}; target {abs(target):.4f} (tolerance {tolerance:g})")
    print(f"trials needed to reach the target (median over {args.seeds} seeds; budget + 1 = not reached: "
          f"{args.trials} trials, random {budget['random']})")
    print(f"| {'searcher':<10} | {'per seed':<24} | {'median':>6} | {'vs random':>9} | {'median best value':>17} |")
    print(f"|{'-' * 12}|{'-' * 26}|{'-' * 8}|{'-' * 11}|{'-' * 19}|")
    medians = {}
    for name in ALGORITHMS:
        runs = [scores for n, _, scores in sorted(results, key=lambda r: r[1]) if n == name]
        needed = [trials_to_reach(scores, target) for scores in runs]
        medians[name] = statistics.median(needed)
        # random not there within its budget: its true median is larger, the ratio an upper bound
        bound = "<" if medians["random"] > budget["random"] and name != "random" else ""
        ratio = f"{bound}{medians[name] / medians['random']:.3f}" if medians[name] <= budget[name] else "not reached"
        best_value = statistics.median(abs(max(scores)) for scores in runs)
        print(f"| {name:<10} | {', '.join(map(str, needed)):<24} | {medians[name]:>6g} | {ratio:>9} | {best_value:>17.4f} |")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
