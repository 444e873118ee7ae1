"""Shared pieces of the contrastive objectives (UniCon, SupCon): pairwise log-probabilities
over a batch of L2-normalised projections, masked per-row means, and the batch rows."""

from __future__ import annotations

import torch

from raysynth.losses.base import LossBatch


def log_prob_matrix(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """log( exp(v_i·v_j/τ) / Σ_{a≠i} exp(v_i·v_a/τ) ) for every pair; the diagonal is unused."""
    sim = features @ features.T / temperature
    self_mask = torch.eye(len(features), dtype=torch.bool, device=features.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    return sim - torch.logsumexp(sim, dim=1, keepdim=True)


def mean_over(log_prob: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row mean of log_prob over ``mask`` (0 where the row's mask is empty), and counts."""
    count = mask.sum(1)
    total = torch.where(mask, log_prob, torch.zeros_like(log_prob)).sum(1)
    return total / count.clamp(min=1), count


def contrastive_rows(batch: LossBatch, with_synthetic: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(features, labels, is_synthetic) of the rows a contrastive objective sees: the real
    rows, plus the synthetic rows labelled with their target class."""
    if not (with_synthetic and batch.has_synthetic):
        n = len(batch.y_real)
        return batch.proj_real, batch.y_real, torch.zeros(n, dtype=torch.bool, device=batch.y_real.device)
    features = torch.cat([batch.proj_real, batch.proj_syn])
    labels = torch.cat([batch.y_real, batch.syn_class])
    flags = torch.cat([torch.zeros_like(batch.y_real), torch.ones_like(batch.syn_class)]).bool()
    return features, labels, flags
