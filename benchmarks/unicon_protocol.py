"""UniCon's MNIST protocol on the embedded digits task (search_spaces/digits-unicon.yaml):
does the GP search over per-class weights find faithful classes ~1, counter-replicated
ones ~0 and morphs in between, and does UniCon with the learned weights match its
oracle weights?

1. The search of digits-unicon.yaml (UniCon loss, two-stage protocol, skopt-gp) runs
   ``--searches`` times with searcher seeds 0, 1, ...; each gives the best trial's
   weights and the mean weights of its top quarter of trials.
2. Every row of UniCon's Tables 2-3 is then trained with train seeds 0..``--seeds``-1 on
   the same data sample (data.seed 0, as each search saw) and scored once on the test
   split: SupCon-Real, SupCon-Mixed, UniCon with all weights 1, UniCon with the learned
   weights (each search's best trial, and each search's top-quarter means: searches x
   seeds runs) and UniCon with the oracle weights (each class's quality: faithful 1,
   counter 0, morph:rho rho).

Prints per class its quality and learned weight (mean ± std over the searches), and per
row the test accuracy (mean ± std over its runs), as markdown for the README.

    python benchmarks/unicon_protocol.py [--searches 3] [--seeds 3] [--trials 40]
    python benchmarks/unicon_protocol.py --weights 0,0,1,1,1 0,0,0.5,0,1   # given weightings only

Uses RAYSYNTH_HOME (default: a temporary directory) for the backbone, pools and MLflow.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "digits-unicon.yaml"


def fmt(xs: list[float], scale: float = 100.0, digits: int = 1) -> str:
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{scale * statistics.mean(xs):.{digits}f} ± {scale * sd:.{digits}f}"


def test_accuracy(config, context, weights: list[float] | None, use_synthetic: bool) -> float:
    from raysynth.train.evaluate import model_accuracy
    from raysynth.train.session import train_in_process

    result, models = train_in_process(config, weights, context, use_synthetic=use_synthetic)
    test = context.split().test
    return model_accuracy(models, test.images, test.labels, result.probes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searches", type=int, default=3, help="searches, with searcher seeds 0..N-1")
    parser.add_argument("--seeds", type=int, default=3, help="train seeds of every test-accuracy row")
    parser.add_argument("--trials", type=int, default=None, help="trials per search (default: the space's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more overrides of the space")
    parser.add_argument("--weights", nargs="+", metavar="W1,W2,...",
                        help="no search: UniCon's test accuracy with each given weighting (class order), over --seeds")
    args = parser.parse_args()
    os.environ.setdefault("RAYSYNTH_HOME", tempfile.mkdtemp(prefix="raysynth-unicon-"))
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from raysynth.cluster import connect_ray
    from raysynth.context import split_of
    from raysynth.home import raysynth_home
    from raysynth.prepare import prepare
    from raysynth.search.options import SearchOptions
    from raysynth.reproduce import oracle_weights
    from raysynth.search.run import run_search
    from raysynth.validate import load_config

    overrides = ["search.final_eval=false", *args.set]
    if args.trials:
        overrides.append(f"search.trials={args.trials}")
    base = load_config(SPACE, overrides)
    classes = split_of(base).classes
    quality = base.pool.quality
    oracle = oracle_weights(classes, quality)
    home = raysynth_home()
    connect_ray()
    start = time.perf_counter()

    if args.weights:  # what a given weighting scores: the oracle's neighbours, say
        for text in args.weights:
            weights = [float(w) for w in text.split(",")]
            if len(weights) != len(classes):
                parser.error(f"--weights {text}: {len(classes)} values needed ({', '.join(classes)})")
            accs = []
            for seed in range(args.seeds):
                config = load_config(SPACE, [*overrides, "search.space={}", f"train.seed={seed}"])
                context = prepare(config)
                accs.append(test_accuracy(config, context, weights, True))
            print(f"weights {dict(zip(classes, weights))}: test {fmt(accs)} ({args.seeds} seeds)", flush=True)
        return 0

    # 1. the searches
    best, top = [], []
    for s in range(args.searches):
        config = load_config(SPACE, [*overrides, f"search.seed={s}"])
        options = SearchOptions(f"sqlite:///{home}/mlflow.db", "unicon-protocol", str(home / "tune"), f"unicon-seed{s}")
        summary = run_search(config, options)
        best.append(summary.best_weights)
        top.append([summary.top_weights[c] for c in classes])
        print(
            f"[{time.perf_counter() - start:6.0f} s] search {s + 1}/{args.searches}: {summary.trials} trials, best val "
            f"{summary.best_val_acc:.3f}; best weights {[round(w, 2) for w in summary.best_weights]}, top-quarter "
            f"{[round(w, 2) for w in top[-1]]}",
            flush=True,
        )

    # 2. the rows, each trained with train seeds 0..seeds-1 and tested once
    unicon_rows = [("UniCon, all weights 1", [[1.0] * len(classes)]),
                   ("UniCon, learned (best trial)", best),
                   ("UniCon, learned (top-quarter mean)", top),
                   ("UniCon, oracle weights", [oracle])]
    rows = [("SupCon-Real", "supcon: {synthetic: real}", [None], False),
            ("SupCon-Mixed", "supcon: {synthetic: mixed}", [None], True)]
    rows += [(label, "unicon: {temperature: 0.07}", ws, True) for label, ws in unicon_rows]
    results: dict[str, list[float]] = {}
    for label, loss, weight_sets, use_synthetic in rows:
        for weights in weight_sets:
            for seed in range(args.seeds):
                config = load_config(SPACE, [*overrides, "search.space={}", f"loss={{{loss}}}", f"train.seed={seed}"])
                context = prepare(config)
                results.setdefault(label, []).append(test_accuracy(config, context, weights, use_synthetic))
        print(f"[{time.perf_counter() - start:6.0f} s] {label}: test {fmt(results[label])}", flush=True)

    print(f"\nUniCon protocol on digits (search_spaces/digits-unicon.yaml), {args.searches} searches x "
          f"{base.search.trials} trials; test accuracy over train seeds 0-{args.seeds - 1} (x searches for learned rows)\n")
    print("| class | quality | learned weight, best trial | learned weight, top-quarter mean | oracle |")
    print("|---|---|---|---|---|")
    for i, c in enumerate(classes):
        print(f"| {c} | {quality.get(c, 'faithful')} | {fmt([b[i] for b in best], 1, 2)} | "
              f"{fmt([t[i] for t in top], 1, 2)} | {oracle[i]:g} |")
    print("\n| method | test accuracy (%) | runs |")
    print("|---|---|---|")
    for label, *_ in rows:
        print(f"| {label} | {fmt(results[label])} | {len(results[label])} |")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
