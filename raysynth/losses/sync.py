"""SyNC (ICLR 2026 submission): fixed simplex-ETF prototypes + a regional contrastive loss.

Only the abstract is public, so this is raysynth's reading, stated precisely:

* **Prototypes.** C unit vectors forming a simplex equiangular tight frame (the
  neural-collapse optimum): pairwise cosine exactly −1/(C−1). They are fixed, never
  trained (:func:`simplex_etf`).
* **Fidelity.** Every feature, real or synthetic, is pulled to its class's prototype:
  mean over rows of 1 − cos(f_i, p_{y_i}) (a synthetic row's class is its target class).
* **Diversity (regional contrastive).** A synthetic feature is *misclassified* when its
  nearest prototype ĉ is not its own class y. Inside its partition (k-means region) r,
  it is contrasted against the prototypes that compete there: its own prototype is the
  positive, and the negatives are the prototype it was confused with plus the
  prototypes of every class present in region r:

      ℓ_u = −log( exp(cos(f_u,p_y)/τ) / Σ_{c∈{y,ĉ}∪classes(r)} exp(cos(f_u,p_c)/τ) )

  averaged over the misclassified synthetic rows (0 when there are none). This pushes
  them away from the prototype they were confused with and toward their own, and only
  against the classes that share their region, which is what "regional" suggests.

    L_SyNC = fidelity_weight · fidelity + contrast_weight · regional
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raysynth.config import field_
from raysynth.losses.base import LossBatch, Objective, register_objective


def simplex_etf(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """C×d unit vectors with pairwise cosine exactly −1/(C−1); needs d ≥ C−1.

    The rows of the centred identity I − 11ᵀ/C span a (C−1)-dimensional space in which
    they form a regular simplex; their coordinates in an orthonormal basis of that space
    are rotated into R^d by a random (seeded) matrix with orthonormal rows.
    """
    if num_classes < 2:
        raise ValueError(f"a simplex ETF needs at least 2 classes, got {num_classes}")
    if dim < num_classes - 1:
        raise ValueError(f"a simplex ETF of {num_classes} classes needs dim >= {num_classes - 1}, got {dim}")
    c = num_classes
    centred = torch.eye(c, dtype=torch.float64) - 1.0 / c
    basis, _ = torch.linalg.qr(centred[:, : c - 1])  # orthonormal basis of span(centred)
    coords = centred @ basis  # C×(C−1)
    coords = coords / coords.norm(dim=1, keepdim=True)
    g = torch.Generator().manual_seed(seed)
    rotation, _ = torch.linalg.qr(torch.randn(dim, c - 1, generator=g, dtype=torch.float64))  # d×(C−1)
    return (coords @ rotation.T).to(torch.float32)


def sync_loss(
    features: torch.Tensor,
    labels: torch.Tensor,
    is_synthetic: torch.Tensor,
    partitions: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 0.1,
    fidelity_weight: float = 1.0,
    contrast_weight: float = 1.0,
    return_terms: bool = False,
):
    """SyNC's loss (see the module docstring) on features N×d (normalised here)."""
    f = F.normalize(features, dim=-1)
    p = F.normalize(prototypes.to(f), dim=-1)
    labels = labels.view(-1).long()
    cos = f @ p.T  # N×C
    fidelity = (1.0 - cos.gather(1, labels[:, None]).squeeze(1)).mean()

    confused = cos.detach().argmax(dim=1)
    wrong = is_synthetic.view(-1).bool() & (confused != labels)
    if wrong.any():
        num_classes = p.shape[0]
        parts = partitions.view(-1).long()
        k = int(parts.max().item()) + 1
        # present[r, c]: some sample of class c lies in region r
        present = torch.zeros(k, num_classes, dtype=torch.bool, device=f.device)
        present[parts, labels] = True
        allowed = present[parts[wrong]]
        rows = torch.arange(int(wrong.sum()), device=f.device)
        allowed[rows, labels[wrong]] = True
        allowed[rows, confused[wrong]] = True
        logits = (cos[wrong] / temperature).masked_fill(~allowed, float("-inf"))
        regional = F.cross_entropy(logits, labels[wrong])
    else:
        regional = features.sum() * 0.0
    total = fidelity_weight * fidelity + contrast_weight * regional
    if return_terms:
        return total, {"fidelity": fidelity, "regional": regional}
    return total


@dataclass
class SyncParams:
    fidelity: float = field_("Weight of the pull to the class's ETF prototype.", 1.0, ge=0.0)
    contrast: float = field_("Weight of the regional contrastive term.", 1.0, ge=0.0)
    temperature: float = field_("Temperature of the regional contrastive term.", 0.1, gt=0.0)
    seed: int = field_("Seed of the ETF's rotation.", 0, ge=0)


@register_objective
class SyNC(Objective):
    name = "sync"
    Params = SyncParams
    needs_projection = True
    needs_partitions = True
    representation = True

    def __init__(self, params: SyncParams):
        super().__init__(params)
        self._etf: torch.Tensor | None = None


    def prototypes(self, num_classes: int, dim: int, device) -> torch.Tensor:
        if self._etf is None or self._etf.shape != (num_classes, dim):
            self._etf = simplex_etf(num_classes, dim, self.params.seed)
        return self._etf.to(device)

    def uses_synthetic(self, class_weights: torch.Tensor) -> bool:
        return True  # SyNC does not weight classes

    def terms(self, batch: LossBatch) -> dict[str, torch.Tensor]:
        features, labels, flags = batch.proj_real, batch.y_real, torch.zeros_like(batch.y_real)
        # without partitions (a real-only run) the whole batch is one region
        parts = batch.part_real if batch.part_real is not None else torch.zeros_like(batch.y_real)
        if batch.has_synthetic:
            features = torch.cat([features, batch.proj_syn])
            labels = torch.cat([labels, batch.syn_class])
            flags = torch.cat([flags, torch.ones_like(batch.syn_class)])
            syn_parts = batch.part_syn if batch.part_syn is not None else torch.zeros_like(batch.syn_class)
            parts = torch.cat([parts, syn_parts])
        num_classes = batch.class_weights.shape[0]
        etf = self.prototypes(num_classes, features.shape[1], features.device)
        _, terms = sync_loss(features, labels, flags, parts, etf, self.params.temperature, return_terms=True)
        return {"fidelity": self.params.fidelity * terms["fidelity"], "regional": self.params.contrast * terms["regional"]}
