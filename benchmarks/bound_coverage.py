"""What the bound loss's regularisers see, and how large they are.

1. **Coverage.** Training draws its images as passes over the real shots and over the pool
   (raysynth/train/draws.py, as the papers' shuffled loaders). Printed per setting: the
   fraction of steps whose discrepancy and robustness terms are non-zero, with the batch's
   terms and (the lightweight variant) over all data seen (``partition.scope: all``), and
   the fraction of the pool, and of the least-drawn class, that the steps drew (goal:
   1.000 once the steps make a pass).
2. **Scale.** At CUB scale, the regularisers λ1·discrepancy + λ2·robustness of cub.yaml's
   λ1 grid {0.1, 2, 20, 50} (λ2 = 10·λ1) over λ·CE_real, with the official code's outputs
   (logit MSE) and g: the pool's size (``normalise: pool``, the default) against the
   paper's batch count (``normalise: batch``). The logits are a partly trained model's,
   simulated: 3 on the image's class plus N(0, 1) noise.

Two settings:

* **CUB scale** (simulated regions): 200 classes, K = 400, 16 real shots and 500
  synthetic images per class (64 for the lightweight variant, as the paper's),
  batches of 64 + 64 (search_spaces/cub.yaml: the official pooled batch of 128). Each image lies in one of its class's two
  regions with probability 0.8, else in any region — roughly what k-means on CLIP
  features gives for well-separated classes.
* **The embedded task** (real regions): search_spaces/digits.yaml with the bound loss,
  its real k-means partitions of the real shots and the generated pool (made, or read
  from the cache, in a temporary RAYSYNTH_HOME unless one is set).

    python benchmarks/bound_coverage.py [--steps 1600]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysynth.losses.bound import bound_loss, discrepancy_term, robustness_term  # noqa: E402
from raysynth.losses.memory import OutputMemory, all_data_terms  # noqa: E402
from raysynth.train.draws import EpochDraws  # noqa: E402


def coverage(real_part, syn_part, syn_class, batch_real, batch_syn, steps, seed=0, over_all=False) -> dict[str, float]:
    """Fractions of steps with a non-zero discrepancy / robustness term, and of the pool
    (and of its least-drawn class) drawn, over ``steps`` steps drawn as training draws."""
    g = torch.Generator().manual_seed(seed)
    real_draws, syn_draws = EpochDraws(len(real_part), seed, "real"), EpochDraws(len(syn_part), seed, "syn")
    memory = OutputMemory(len(real_part), len(syn_part), 8) if over_all else None
    drawn = torch.zeros(len(syn_part), dtype=torch.bool)
    disc = rob = 0
    for step in range(steps):
        idx, sidx = real_draws.take(step, batch_real), syn_draws.take(step, batch_syn)
        drawn[sidx] = True
        if memory is not None:  # random logits; the terms over every sample seen so far
            out_real, out_syn = torch.rand(len(idx), 8, generator=g), torch.rand(len(sidx), 8, generator=g)
            real, syn = (idx, out_real, real_part[idx]), (sidx, out_syn, syn_part[sidx])
            d, r = all_data_terms(memory, real, syn)
            memory.store("real", *real)
            memory.store("syn", *syn)
            disc, rob = disc + bool(d > 0), rob + bool(r > 0)
            continue
        h_real = torch.rand(len(idx), 8, generator=g).softmax(-1)
        h_syn = torch.rand(len(sidx), 8, generator=g).softmax(-1)
        disc += bool(discrepancy_term(h_real, real_part[idx], h_syn, syn_part[sidx]) > 0)
        rob += bool(robustness_term(h_syn, syn_part[sidx], real_part[idx]) > 0)
    per_class = torch.zeros(int(syn_class.max()) + 1).index_add_(0, syn_class, drawn.float())
    per_class /= torch.bincount(syn_class).float()
    return {"disc": disc / steps, "rob": rob / steps, "pool": drawn.float().mean().item(), "class_min": per_class.min().item()}


def lambda_grid_ratios(lam=4.0, grid=(0.1, 2.0, 20.0, 50.0), batches=20, seed=0) -> list[tuple[float, float, float]]:
    """(λ1, pool-normalised regulariser / λ·CE_real, batch-normalised / λ·CE_real) at CUB
    scale, averaged over ``batches`` batches of 64 + 64 drawn as training draws."""
    g = torch.Generator().manual_seed(seed)
    classes, pool = 200, 200 * 500
    real_part, syn_part = cub_like_regions()
    real_y, syn_y = torch.arange(classes).repeat_interleave(16), torch.arange(classes).repeat_interleave(500)
    real_draws, syn_draws = EpochDraws(len(real_part), seed, "real"), EpochDraws(len(syn_part), seed, "syn")
    sums = {(lam1, norm): 0.0 for lam1 in grid for norm in ("pool", "batch")}
    for step in range(batches):
        idx, sidx = real_draws.take(step, 64), syn_draws.take(step, 64)
        logits = [3.0 * torch.nn.functional.one_hot(y, classes) + torch.randn(len(y), classes, generator=g)
                  for y in (real_y[idx], syn_y[sidx])]
        for norm in ("pool", "batch"):
            _, t = bound_loss(logits[0], real_y[idx], real_part[idx], logits[1], syn_y[sidx], syn_part[sidx], output="logits",
                              distance="mse", normalise=norm, pool_images=pool, return_terms=True)
            for lam1 in grid:
                sums[lam1, norm] += float((lam1 * t["discrepancy"] + 10 * lam1 * t["robustness"]) / (lam * t["ce_real"]))
    return [(lam1, sums[lam1, "pool"] / batches, sums[lam1, "batch"] / batches) for lam1 in grid]


def cub_like_regions(classes=200, k=400, shots=16, per_class=500, faithful=0.8, seed=0):
    """(real, synthetic) regions of CUB-shaped data, each class's images in order."""
    g = torch.Generator().manual_seed(seed)

    def assign(n_per_class):
        labels = torch.arange(classes).repeat_interleave(n_per_class)
        own = labels * (k // classes) + torch.randint(k // classes, (len(labels),), generator=g)
        stray = torch.rand(len(labels), generator=g) > faithful
        return torch.where(stray, torch.randint(k, (len(labels),), generator=g), own)

    return assign(shots), assign(per_class)


def embedded_regions():
    """The digits task's real partitions (bound loss, the config's K), made through the
    real pipeline: pretrained backbone, generated pool, k-means."""
    from raysynth.cluster import connect_ray
    from raysynth.losses import parse_loss
    from raysynth.prepare import prepare
    from raysynth.train.data import train_data
    from raysynth.validate import load_config

    os.environ.setdefault("RAYSYNTH_HOME", tempfile.mkdtemp(prefix="raysynth-coverage-"))
    config = load_config(Path(__file__).resolve().parents[1] / "search_spaces" / "digits.yaml", ["loss={bound: {}}", "search.space={}"])
    connect_ray()
    context = prepare(config)
    data = train_data(config, context, parse_loss(config.loss))
    return data.real_part, data.syn_part, data.syn_class, config.train.batch_real, config.train.batch_syn, data.num_partitions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1600, help="steps per setting (CUB: 1563 of 64 make one pass)")
    args = parser.parse_args()

    rows = []
    real, syn = cub_like_regions()
    syn_class = torch.arange(200).repeat_interleave(500)
    light_real, light_syn = cub_like_regions(per_class=64)
    rows.append(("CUB scale: K=400, 200 classes, 64+64", "batch terms", coverage(real, syn, syn_class, 64, 64, args.steps)))
    rows.append(("CUB scale, 64/class (lightweight)", "over all data",
                 coverage(light_real, light_syn, torch.arange(200).repeat_interleave(64), 64, 64, args.steps, over_all=True)))
    real, syn, syn_class, batch_real, batch_syn, k = embedded_regions()
    setting = f"embedded digits: K={k}, 5 classes, {batch_real}+{batch_syn}"
    for label, over_all in (("batch terms", False), ("over all data", True)):
        rows.append((setting, label, coverage(real, syn, syn_class, batch_real, batch_syn, args.steps, over_all=over_all)))

    print(f"\nbatches drawn as passes over the data ({args.steps} steps each; goal: terms >= 0.9, drawn 1.000)")
    print(f"{'setting':<40} {'terms':<14} {'discrepancy':>11} {'robustness':>11} {'pool drawn':>11} {'least class':>11}")
    for setting, label, c in rows:
        print(f"{setting:<40} {label:<14} {c['disc']:>11.3f} {c['rob']:>11.3f} {c['pool']:>11.3f} {c['class_min']:>11.3f}")

    print("\nCUB scale, cub.yaml's λ grid (λ = 4, λ2 = 10·λ1, logit MSE): (λ1·disc + λ2·rob) / (λ·CE_real)")
    print(f"{'λ1':>6} {'normalise: pool':>16} {'normalise: batch':>17}")
    for lam1, pool, batch in lambda_grid_ratios():
        print(f"{lam1:>6g} {pool:>16.2e} {batch:>17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
