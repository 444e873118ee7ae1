"""The few-shot classifier a trial trains: cached backbone weights + fresh LoRA + head.

The backbone's state dict is memoised per process, so with ``reuse_actors=True`` a Tune
actor builds the backbone once, not once per trial.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import torch

from raysynth.config import Config, ModelConfig, from_dict
from raysynth.data import cached_split
from raysynth.home import fetch
from raysynth.losses import PrototypeHead, parse_loss
from raysynth.models import build_classifier, create_backbone
from raysynth.models.backbone import create_model
from raysynth.models.classifier import FewShotClassifier, zero_shot_head
from raysynth.train.pretrain import pretrained_path

# The i-th of several models of one config (UniCon's n_contr encoders, the final seeds)
# starts from seed train.seed + 1009 * i: a prime stride, so the seeds of consecutive
# configs (train.seed, train.seed + 1, ...) never coincide with another config's repeats.
REPEAT_SEED_STRIDE = 1009


@functools.lru_cache(maxsize=2)
def _backbone_state(config_json: str, checkpoint: str | None) -> dict:
    model = create_backbone(from_dict(ModelConfig, json.loads(config_json)), checkpoint)
    return {k: v.clone() for k, v in model.state_dict().items()}


def backbone_checkpoint(config: Config) -> str | None:
    """The pretrained backbone raysynth trained itself (None: model.pretrained is used)."""
    if config.model.pretrained:
        return None
    path = pretrained_path(cached_split(config), config.model)
    if not fetch(path):  # copied from a remote home on first use
        raise FileNotFoundError(f"pretrained backbone missing: {path} (run `raysynth pretrain`)")
    return str(path)


def normalizes(config: Config) -> bool:
    """Pixel normalisation: explicit, else on for pretrained CLIP weights."""
    return config.model.normalize if config.model.normalize is not None else bool(config.model.pretrained)


def build_model(config: Config, num_classes: int, with_objectives: bool = True, index: int = 0) -> FewShotClassifier:
    """A fresh classifier: backbone weights (memoised per process) + new LoRA + new head,
    plus what the selected objectives need (a projection head, a prototype head).
    ``index`` seeds the i-th of several repeats (UniCon's n_contr encoders)."""
    state = _backbone_state(json.dumps(dataclasses.asdict(config.model), sort_keys=True), backbone_checkpoint(config))
    torch.manual_seed(config.train.seed + REPEAT_SEED_STRIDE * index)
    clip = create_model(config.model.name)
    clip.load_state_dict(state)
    if not with_objectives:
        return build_classifier(clip, num_classes, lora=None, normalize=normalizes(config))
    split = cached_split(config)
    model = assemble_classifier(config, clip, split.classes, split.metaclass)
    return model.to("cuda") if torch.cuda.is_available() else model


def assemble_classifier(config: Config, clip: torch.nn.Module, classes: list[str], metaclass: str) -> FewShotClassifier:
    """The classifier a config trains, around a CLIP model: LoRA, the head the config
    selects, a projection head where an objective needs one. Needs no dataset (the class
    names are given), so a logged model is rebuilt from its config alone
    (:mod:`raysynth.tracking.model`)."""
    objectives = parse_loss(config.loss)
    num_classes = len(classes)
    head, projection_dim = None, None
    embed_dim = clip.visual.output_dim
    for o in objectives:
        if o.head == "prototype":
            p = o.params
            head = PrototypeHead(num_classes, embed_dim, p.prototypes, p.temperature, seed=config.train.seed)
    if any(o.needs_projection for o in objectives):
        # SyNC's ETF needs at least C-1 dimensions
        projection_dim = max(config.model.projection_dim, num_classes)
    if head is None and config.model.head == "zero_shot":
        head = zero_shot_head(clip, config.model.name, classes, metaclass)
    return build_classifier(clip, num_classes, config.model.lora, head=head, projection_dim=projection_dim, normalize=normalizes(config))


def build_models(config: Config, num_classes: int) -> list[FewShotClassifier]:
    """n_contr models: seeds of one config (joint) or UniCon's encoders (two-stage)."""
    return [build_model(config, num_classes, index=i) for i in range(config.train.n_contr)]
