"""How often the bound loss's regularisers act: the fraction of training steps whose
discrepancy and robustness terms are non-zero, with uniform batches, with
region-balanced batches (``partition.batch_regions``; raysynth/train/regions.py) and,
for the lightweight variant, with the terms over all data (``partition.scope: all``;
raysynth/losses/memory.py: every sample's latest output, the batch's rows live).

Two settings:

* **CUB scale** (simulated regions): 200 classes, K = 400, 16 real shots and 500
  synthetic images per class (64 for the lightweight variant, as the paper's),
  batches of 32 + 32 (search_spaces/cub.yaml). Each image
  lies in one of its class's two regions with probability 0.8, else in any region —
  roughly what k-means on CLIP features gives for well-separated classes.
* **The embedded task** (real regions): search_spaces/digits.yaml with the bound loss,
  its real k-means partitions of the real shots and the generated pool (made, or read
  from the cache, in a temporary RAYSYNTH_HOME unless one is set).

A term counts as acting in a step when it is non-zero for random model outputs: it is
zero exactly when no region holds real and synthetic images of the batch (discrepancy)
or none holds two synthetic images besides (robustness). Goal: >= 0.9 for both terms.

    python benchmarks/bound_coverage.py [--steps 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raysynth.losses.bound import discrepancy_term, robustness_term  # noqa: E402
from raysynth.losses.memory import OutputMemory, all_data_terms  # noqa: E402
from raysynth.train.regions import RegionSampler  # noqa: E402


def coverage(real_part, syn_part, batch_real, batch_syn, regions, steps, seed=0, over_all=False) -> tuple[float, float]:
    """(fraction of steps with a non-zero discrepancy, ... robustness term)."""
    g = torch.Generator().manual_seed(seed)
    sampler = RegionSampler(real_part, syn_part, regions) if regions else None
    memory = OutputMemory(len(real_part), len(syn_part), 8) if over_all else None
    disc = rob = 0
    for _ in range(steps):
        if sampler is not None:
            idx, sidx = sampler.draw(batch_real, batch_syn, g)
        else:
            idx = torch.randint(len(real_part), (batch_real,), generator=g)
            sidx = torch.randint(len(syn_part), (batch_syn,), generator=g)
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
    return disc / steps, rob / steps


def cub_like_regions(classes=200, k=400, shots=16, per_class=500, faithful=0.8, seed=0):
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
    from raysynth.prepare import prepare
    from raysynth.train.data import train_data
    from raysynth.validate import load_config

    os.environ.setdefault("RAYSYNTH_HOME", tempfile.mkdtemp(prefix="raysynth-coverage-"))
    config = load_config(Path(__file__).resolve().parents[1] / "search_spaces" / "digits.yaml", ["loss={bound: {}}", "search.space={}"])
    connect_ray()
    prepare(config)
    data = train_data(config)
    return data.real_part, data.syn_part, config.train.batch_real, config.train.batch_syn, data.num_partitions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--regions", type=int, default=4, help="partition.batch_regions of the balanced draws")
    args = parser.parse_args()

    rows = []
    kinds = (("uniform", 0, False), (f"balanced ({args.regions} regions)", args.regions, False), ("uniform, over all data", 0, True))
    real, syn = cub_like_regions()
    light_real, light_syn = cub_like_regions(per_class=64)
    for label, r, over_all in kinds:
        pools = (light_real, light_syn) if over_all else (real, syn)
        rows.append(("CUB scale: K=400, 200 classes, 32+32", label, *coverage(*pools, 32, 32, r, args.steps, over_all=over_all)))
    real, syn, batch_real, batch_syn, k = embedded_regions()
    for label, r, over_all in kinds:
        setting = f"embedded digits: K={k}, 5 classes, {batch_real}+{batch_syn}"
        rows.append((setting, label, *coverage(real, syn, batch_real, batch_syn, r, args.steps, over_all=over_all)))

    print(f"\nsteps with a non-zero term ({args.steps} steps each; goal >= 0.9)")
    print(f"{'setting':<40} {'batches':<24} {'discrepancy':>11} {'robustness':>11}")
    for setting, label, disc, rob in rows:
        print(f"{setting:<40} {label:<24} {disc:>11.3f} {rob:>11.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
