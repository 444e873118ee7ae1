"""open_clip backbones: the package's own model configs, and where their weights come from.

``raysynth-tiny`` is a CLIP-architecture ViT (patch 4, width 96, 4 layers, 32x32) shipped
as an open_clip JSON config, so it goes through exactly the code path of ViT-B/16.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import open_clip
import torch

from raysynth.config import ConfigError, ModelConfig

log = logging.getLogger(__name__)
CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


@contextlib.contextmanager
def quiet_open_clip():
    """open_clip logs every model creation at INFO on the root logger; silence that."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def create_model(name: str, pretrained: str | None = None) -> torch.nn.Module:
    register_model_configs()
    with quiet_open_clip():
        return open_clip.create_model(name, pretrained=pretrained)


def register_model_configs() -> None:
    """Add the package's model configs to open_clip's registry (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def model_config(name: str) -> dict:
    register_model_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ConfigError(f"model.name: unknown open_clip model '{name}'")
    return cfg


def create_backbone(config: ModelConfig, weights: str | Path | None = None) -> torch.nn.Module:
    """The full open_clip model (vision + text towers), weights loaded if given.

    ``weights`` is a state-dict file (raysynth's own pretraining); otherwise
    ``config.pretrained`` (an open_clip tag or checkpoint path) is used.
    """
    register_model_configs()
    model_config(config.name)  # clear error for an unknown name
    if weights is not None:
        model = create_model(config.name)
        state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model
    if config.pretrained:
        return create_model(config.name, pretrained=config.pretrained)
    raise ConfigError(
        f"model.pretrained: model '{config.name}' needs weights: give an open_clip tag or a checkpoint path"
    )
