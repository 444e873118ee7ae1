"""The few-shot classifier a trial trains: the backbone its run context names + fresh
LoRA + head.

The backbone's state dict is read once per process (:meth:`RunContext.backbone_state`), so
with ``reuse_actors=True`` a Tune actor builds the backbone once, not once per trial.
"""

from __future__ import annotations

import torch

from raysynth.config import Config
from raysynth.context import RunContext
from raysynth.losses import Objective, PrototypeHead, parse_loss
from raysynth.models import build_classifier
from raysynth.models.backbone import create_model
from raysynth.models.classifier import FewShotClassifier, zero_shot_head

# The i-th of several models of one config (UniCon's n_contr encoders, the final seeds)
# starts from seed train.seed + 1009 * i: a prime stride, so the seeds of consecutive
# configs (train.seed, train.seed + 1, ...) never coincide with another config's repeats.
REPEAT_SEED_STRIDE = 1009


def normalizes(config: Config) -> bool:
    """Pixel normalisation: explicit, else on for pretrained CLIP weights."""
    return config.model.normalize if config.model.normalize is not None else bool(config.model.pretrained)


def build_model(
    config: Config, context: RunContext, with_objectives: bool = True, index: int = 0, objectives: list[Objective] | None = None
) -> FewShotClassifier:
    """A fresh classifier: the context's backbone weights + new LoRA + new head, plus what
    the selected objectives need (a projection head, a prototype head). ``index`` seeds
    the i-th of several repeats (UniCon's n_contr encoders). ``with_objectives=False``: the
    frozen backbone with a throw-away linear head (features for quality and partitions)."""
    state = context.backbone_state(config.model)
    torch.manual_seed(config.train.seed + REPEAT_SEED_STRIDE * index)
    clip = create_model(config.model.name)
    clip.load_state_dict(state)
    if with_objectives:
        model = assemble_classifier(config, clip, list(context.classes), context.metaclass, objectives)
        return model.to("cuda") if torch.cuda.is_available() else model
    return build_classifier(clip, context.num_classes, lora=None, normalize=normalizes(config))


def assemble_classifier(
    config: Config, clip: torch.nn.Module, classes: list[str], metaclass: str, objectives: list[Objective] | None = None
) -> FewShotClassifier:
    """The classifier a config trains, around a CLIP model: LoRA, the head the config
    selects, a projection head where an objective needs one. Needs no dataset (the class
    names are given), so a logged model is rebuilt from its config alone
    (:mod:`raysynth.tracking.model`)."""
    objectives = parse_loss(config.loss) if objectives is None else objectives
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


def build_models(config: Config, context: RunContext, objectives: list[Objective]) -> list[FewShotClassifier]:
    """n_contr models: seeds of one config (joint) or UniCon's encoders (two-stage)."""
    return [build_model(config, context, index=i, objectives=objectives) for i in range(config.train.n_contr)]
