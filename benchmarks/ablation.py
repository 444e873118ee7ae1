"""Ablations of the founding papers' objectives on the embedded default, over seeds.

Two tables, each row trained from scratch per seed (the seed sets both the k-shot
sample and the training seed) and scored once on the test split; validation accuracy
is printed beside it. Nothing is tuned per row: defaults of the digits search space,
6 epochs x 20 steps, the embedded tiny CLIP + LoRA.

1. The ICML 2025 generalization-bound loss, the paper's Table 2 rows: no regulariser,
   robustness only, discrepancy only, both — at the paper's lightweight setting
   (λ1, λ2) = (0.1, 1) and at (2, 20) — λ = 4, K = 2 x classes (FAISS k-means on
   pixels), on a faithful morph pool (the paper's setting: a generator of the right
   classes).
2. UniCon's comparison on the UniCon protocol pool (the embedded default: classes
   "five" and "six" counter-replicated, i.e. their synthetic images are 8s and 9s):
   SupCon-Real, SupCon-Mixed, UniCon with the weights an ideal search would find
   (0 for the two poisoned classes, 1 for the rest) and with all weights 1. Encoder
   with the contrastive loss, then 3 linear classifiers on frozen features (n_contr=1,
   n_classif=3).

    .venv/bin/python benchmarks/ablation.py [--seeds 3] [--quick]

Uses RAYSYNTH_HOME (default ~/.raysynth) for the cached backbone, pools and partitions.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["five", "six", "seven", "eight", "nine"]
FAITHFUL = ["pool.quality={}"]
POISONED = "pool.quality={five: counter, six: counter}"  # this table's task (FAITHFUL rows override it)
ORACLE = [0.0, 0.0, 1.0, 1.0, 1.0]  # five, six poisoned


@dataclass
class Row:
    table: str
    label: str
    overrides: list[str]
    weights: list[float] | None = None


def rows() -> list[Row]:
    out = []
    for lam1, lam2 in ((0.1, 1.0), (2.0, 20.0)):
        for label, l1, l2 in (
            ("no regulariser", 0.0, 0.0),
            ("robustness only", 0.0, lam2),
            ("discrepancy only", lam1, 0.0),
            ("both", lam1, lam2),
        ):
            if label == "no regulariser" and lam1 != 0.1:
                continue  # the same row at every scale
            scale = "" if label == "no regulariser" else f" (λ1,λ2)=({l1 or lam1:g},{l2 or lam2:g})"
            out.append(Row("bound", label + scale, FAITHFUL + [f"loss={{bound: {{lam: 4.0, lam1: {l1}, lam2: {l2}}}}}"]))
    contrastive = ["train.n_classif=3"]
    out += [
        Row("unicon", "SupCon-Real", contrastive + ["loss={supcon: {synthetic: real}}"]),
        Row("unicon", "SupCon-Mixed", contrastive + ["loss={supcon: {synthetic: mixed}}"]),
        Row("unicon", "UniCon, w = 0 for poisoned classes", contrastive + ["loss={unicon: {}}"], ORACLE),
        Row("unicon", "UniCon, all w = 1", contrastive + ["loss={unicon: {}}"], [1.0] * 5),
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 epoch, for a smoke test")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from raysynth.context import split_of
    from raysynth.prepare import prepare
    from raysynth.train.evaluate import model_accuracy
    from raysynth.train.session import train_in_process
    from raysynth.validate import load_config

    results: dict[str, list[tuple[float, float]]] = {}
    plan = rows()
    start = time.perf_counter()
    for i, row in enumerate(plan):
        for seed in range(args.seeds):
            overrides = ["search.space={}", POISONED, f"data.seed={seed}", f"train.seed={seed}", *row.overrides]
            if args.quick:
                overrides.append("train.epochs=1")
            config = load_config(REPO / "search_spaces" / "digits.yaml", overrides)
            context = prepare(config)  # cached: backbone, pool, partitions
            result, models = train_in_process(config, row.weights, context)
            metrics = result.metrics
            split = split_of(config)
            test = model_accuracy(models, split.test.images, split.test.labels, result.probes)
            results.setdefault(row.label, []).append((metrics.val_acc, test))
            print(
                f"[{time.perf_counter() - start:6.0f} s] row {i + 1}/{len(plan)} seed {seed}: "
                f"{row.label}: val {metrics.val_acc:.3f} test {test:.3f}",
                flush=True,
            )

    for table, title in (("bound", "Generalization-bound loss (faithful pool)"), ("unicon", "Contrastive objectives (poisoned pool)")):
        print(f"\n{title}, {args.seeds} seeds, accuracy mean ± std")
        print(f"| {'row':<44} | {'val':>13} | {'test':>13} |")
        print(f"|{'-' * 46}|{'-' * 15}|{'-' * 15}|")
        for row in (r for r in plan if r.table == table):
            vals = [v for v, _ in results[row.label]]
            tests = [t for _, t in results[row.label]]

            def fmt(xs):
                sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
                return f"{100 * statistics.mean(xs):5.1f} ± {100 * sd:4.1f}"

            print(f"| {row.label:<44} | {fmt(vals):>13} | {fmt(tests):>13} |")


if __name__ == "__main__":
    main()
