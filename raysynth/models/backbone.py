"""open_clip backbones: the package's own model configs, and where their weights come from.

``raysynth-tiny`` is a CLIP-architecture ViT (patch 4, width 96, 4 layers, 32x32) shipped
as an open_clip JSON config, so it goes through exactly the code path of ViT-B/16.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path

import open_clip
import torch

from raysynth.config import ConfigError, ModelConfig
from raysynth.storage import expand

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


# the layer types peft's LoRA can adapt
LORA_LAYERS = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding, torch.nn.MultiheadAttention)


def check_lora_targets(name: str, targets: list[str], where: str = "model.lora.target_modules") -> None:
    """Every LoRA target names a layer of ``name``'s vision tower that LoRA can adapt, as
    peft matches them (the module's name, or its last parts): the tower is built on the
    meta device, so no memory is allocated and no weights are read."""
    if not targets:
        raise ConfigError(f"{where}: empty; name at least one layer of the vision tower (e.g. attn, c_fc, c_proj)")
    register_model_configs()
    with quiet_open_clip(), torch.device("meta"):
        visual = open_clip.create_model(name, device="meta").visual
    layers = [n for n, m in visual.named_modules() if isinstance(m, LORA_LAYERS)]
    for i, target in enumerate(targets):
        if not any(n == target or n.endswith("." + target) for n in layers):
            known = sorted({n.rsplit(".", 1)[-1] for n in layers})
            raise ConfigError(f"{where}[{i}]: no layer of {name}'s vision tower that LoRA can adapt is named "
                              f"'{target}' (known: {', '.join(known)})")


def register_model_configs() -> None:
    """Add the package's model configs to open_clip's registry (idempotent)."""
    global _registered
    if not _registered:
        open_clip.add_model_config(CONFIG_DIR)
        _registered = True


def model_config(name: str, where: str = "model.name") -> dict:
    register_model_configs()
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        raise ConfigError(f"{where}: unknown open_clip model '{name}' (see open_clip.list_models())")
    return cfg


def create_backbone(config: ModelConfig, checkpoint: str | Path | None = None) -> torch.nn.Module:
    """The full open_clip model (vision + text towers), weights loaded if given.

    ``checkpoint`` is a state-dict file (raysynth's own pretraining); otherwise
    ``config.pretrained`` (an open_clip tag or checkpoint path) is used.
    """
    register_model_configs()
    model_config(config.name)  # clear error for an unknown name
    if checkpoint is not None:
        model = create_model(config.name)
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        return model
    if config.pretrained:
        check_pretrained(config)
        try:
            return create_model(config.name, pretrained=resolve_pretrained(config.pretrained))
        except (RuntimeError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                f"model.pretrained: cannot load '{config.pretrained}' for {config.name} ({first}); "
                "without internet give a local checkpoint path"
            ) from None
    raise ConfigError(
        f"model.pretrained: model '{config.name}' needs weights: give an open_clip tag or a checkpoint path"
    )


def is_path(pretrained: str) -> bool:
    return os.sep in pretrained or pretrained.startswith(("~", ".")) or pretrained.endswith(
        (".pt", ".pth", ".bin", ".safetensors")
    )


def resolve_pretrained(pretrained: str) -> str:
    return str(Path(pretrained).expanduser()) if is_path(pretrained) else pretrained


def _check_checkpoint(name: str, path: Path) -> None:
    """The file is a checkpoint of ``name`` (every key and shape, as open_clip loads it),
    checked on a meta-device model: nothing is allocated beside the file's tensors."""
    with quiet_open_clip(), torch.device("meta"):
        model = open_clip.create_model(name, device="meta")
    try:
        with warnings.catch_warnings():  # copying into a meta tensor is a no-op, as intended here
            warnings.simplefilter("ignore")
            open_clip.load_checkpoint(model, str(path))
    except Exception as exc:  # torch's unpickling, a key or shape mismatch
        lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else f"{type(exc).__name__}: {lines[0] if lines else ''}"
        raise ConfigError(f"model.pretrained: {path} is not a checkpoint of {name} ({detail[:200]})") from None


def check_pretrained(config: ModelConfig) -> None:
    """One-line ConfigError for weights that cannot be had: a missing checkpoint file, a
    tag open_clip does not know for the model, or a tag not in the local cache while the
    hub is offline (``HF_HUB_OFFLINE=1``). Never a silent random initialisation."""
    p = config.pretrained
    if not p:
        return
    model_config(config.name)
    if is_path(p):
        if not expand(p, "model.pretrained").is_file():
            raise ConfigError(f"model.pretrained: checkpoint file {p} not found")
        _check_checkpoint(config.name, Path(p).expanduser())
        return
    tags = open_clip.list_pretrained_tags_by_model(config.name)
    if p not in tags:
        raise ConfigError(
            f"model.pretrained: '{p}' is not an open_clip tag of {config.name} "
            f"(known: {', '.join(tags) or 'none'}; or give a checkpoint path)"
        )
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("0", "", "false"):
        from open_clip.pretrained import download_pretrained, get_pretrained_cfg

        try:
            download_pretrained(get_pretrained_cfg(config.name, p))
        except Exception:
            raise ConfigError(
                f"model.pretrained: weights '{p}' of {config.name} are not in the local cache and HF_HUB_OFFLINE "
                "is set; download them on a machine with internet or give a checkpoint path"
            ) from None
