"""open_clip backbones, LoRA adapters via peft, the few-shot classifier."""

from raysynth.models.backbone import create_backbone, register_model_configs
from raysynth.models.classifier import FewShotClassifier, build_classifier

__all__ = ["FewShotClassifier", "build_classifier", "create_backbone", "register_model_configs"]
