"""Per-class weight parameterisations, one file each, registered by name (see ``base``);
adding one is adding a file to this folder."""

from raysynth.registry import import_modules
from raysynth.search.weightings.base import (
    WEIGHTINGS,
    WEIGHTS_KEY,
    Weighting,
    is_weight_param,
    parse_weighting,
    register_weighting,
    weight_param_keys,
)

import_modules(__name__)

__all__ = [
    "WEIGHTINGS", "WEIGHTS_KEY", "Weighting", "is_weight_param", "parse_weighting", "register_weighting",
    "weight_param_keys",
]
