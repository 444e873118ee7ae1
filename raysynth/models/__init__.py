"""open_clip backbones, LoRA adapters via peft, the few-shot classifier."""

from raysynth.config import ModelConfig
from raysynth.models.backbone import check_lora_targets, check_pretrained, create_backbone, model_config, register_model_configs
from raysynth.models.classifier import FewShotClassifier, build_classifier


def check(model: ModelConfig) -> None:
    """The model section: a model open_clip knows, LoRA targets that name its layers,
    pretrained weights that exist (or can be found offline)."""
    model_config(model.name)
    check_lora_targets(model.name, model.lora.target_modules)
    check_pretrained(model)


__all__ = ["FewShotClassifier", "build_classifier", "check", "create_backbone", "register_model_configs"]
