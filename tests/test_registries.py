"""Adding a component is adding one file: a throwaway module dropped into each registry
package is imported by the package, listed by its registry, accepted by the config and
named in the command's help. A name registered twice is an error."""

import importlib
import sys
import textwrap

import pytest
from conftest import REPO

from raysynth.config import ConfigError
from raysynth.registry import Registry, import_modules

MODULES = {
    "raysynth.data": ("raysynth.data.base:DATASETS", '''
        from raysynth.data.base import register_dataset

        @register_dataset("throwaway")
        def load(config):
            raise NotImplementedError
    '''),
    "raysynth.generators.backends": ("raysynth.generators.base:GENERATORS", '''
        from raysynth.generators.base import Generator, register_generator

        @register_generator("throwaway")
        class Throwaway(Generator):
            def fit(self, shots):
                pass

            def translate(self, references, target_classes, strength, seeds):
                return references, target_classes
    '''),
    "raysynth.losses": ("raysynth.losses.base:OBJECTIVES", '''
        from dataclasses import dataclass

        from raysynth.losses.base import Objective, register_objective

        @dataclass
        class Params:
            weight: float = 1.0

        @register_objective
        class Throwaway(Objective):
            name = "throwaway"
            Params = Params

            def terms(self, batch):
                return {"throwaway": self.params.weight * batch.logits_real.sum() * 0}
    '''),
    "raysynth.search.searchers": ("raysynth.search.searchers.base:SEARCHERS", '''
        from raysynth.search.searchers.base import register_searcher

        @register_searcher("throwaway")
        def build(options):
            from ray.tune.search.basic_variant import BasicVariantGenerator

            return BasicVariantGenerator(random_state=options.seed)
    '''),
    "raysynth.search.weightings": ("raysynth.search.weightings.base:WEIGHTINGS", '''
        from raysynth.search.weightings.base import Weighting, register_weighting

        @register_weighting
        class Throwaway(Weighting):
            name = "throwaway"
            param_key = "w_throwaway"

            def to_tune(self, classes):
                return {}

            def weights(self, params, classes, context):
                return [1.0] * len(classes)
    '''),
    "raysynth.search.schedulers": ("raysynth.search.schedulers.base:SCHEDULERS", '''
        from raysynth.search.schedulers.base import register_scheduler

        @register_scheduler("throwaway")
        def build(config):
            from ray.tune.schedulers import FIFOScheduler

            return FIFOScheduler()
    '''),
}


def _registry(path: str) -> Registry:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


@pytest.fixture
def throwaway_modules(tmp_path):
    """Each registry package gets one more folder on its path holding one new module."""
    added = []
    for package, (registry, source) in MODULES.items():
        folder = tmp_path / package.replace(".", "_")
        folder.mkdir()
        (folder / "throwaway_component.py").write_text(textwrap.dedent(source))
        pkg = importlib.import_module(package)
        pkg.__path__.append(str(folder))
        added.append((pkg, str(folder), _registry(registry), f"{package}.throwaway_component"))
    yield added
    for pkg, folder, registry, module in added:
        pkg.__path__.remove(folder)
        registry.remove("throwaway")
        sys.modules.pop(module, None)


def test_a_new_file_is_a_new_registered_component(throwaway_modules, capsys):
    for pkg, _, registry, module in throwaway_modules:
        assert "throwaway" not in registry
        assert "throwaway_component" in import_modules(pkg.__name__)
        assert "throwaway" in registry and "throwaway" in registry.known(), pkg.__name__

    from raysynth.validate import load_config

    config = load_config(REPO / "search_spaces" / "digits.yaml", [
        "search.algorithm=throwaway", "search.scheduler.name=throwaway", "loss={ce: {}, throwaway: {weight: 2}}",
        "search.space.class_weights={type: throwaway}", "pool.generator=throwaway",
    ])
    assert config.search.algorithm == "throwaway" and config.loss["throwaway"] == {"weight": 2}

    from raysynth.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "a registered dataset: cub, digits, flowers, folder, throwaway" in help_text
    assert "a registered searcher: optuna-gp, optuna-tpe, random, skopt-gp, throwaway" in help_text


def test_unknown_names_list_the_registry_and_duplicates_are_refused():
    from raysynth.validate import load_config

    with pytest.raises(ConfigError, match=r"search.scheduler.name: unknown scheduler 'hyperband' \(known: asha, fifo\)"):
        load_config(REPO / "search_spaces" / "digits.yaml", ["search.scheduler.name=hyperband"])
    with pytest.raises(ConfigError, match=r"pool.generator: unknown generator 'gan' \(known: ddpm, morph, stable_diffusion\)"):
        load_config(REPO / "search_spaces" / "digits.yaml", ["pool.generator=gan"])
    registry = Registry("thing")
    registry.add("a", 1)
    with pytest.raises(ValueError, match="thing 'a' is already registered"):
        registry.add("a", 2)
