"""``raysynth reproduce NAME``: one command per published table.

A protocol is a paper's own setting (a search-space YAML plus the overrides its table
used), the rows of its table raysynth can train, the numbers the paper printed for them
and the differences that remain between its run and ours, named. Running one:

1. prepares what every row trains on (backbone, pools, partitions: cached);
2. for a protocol whose method learns weights (UniCon), runs its search first;
3. trains every row with Ray Train over ``--seeds`` seeds (the finals' path: on a
   cluster, each row on ``resources.final`` workers, the rows side by side) and reads
   the test split once per row;
4. prints the paper's number beside the run's for every row, then the differences.

The real-data protocols need the dataset under ``--data-root`` and the papers' weights
(CLIP ViT-B/16, Stable Diffusion, a fine-tuned generator where the paper fine-tuned one);
the tests run them on miniature trees with tiny models, down to the printed table.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from raysynth.config import Config, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One row of a published table: what raysynth trains for it and what the paper printed."""

    label: str
    published: float | None  # test accuracy in %, None where the paper has no such row
    overrides: tuple[str, ...] = ()  # on top of the protocol's
    weights: str = "ones"  # ones | oracle | learned (the search's best trial)
    use_synthetic: bool = True


@dataclass(frozen=True)
class Protocol:
    name: str
    source: str  # the paper and its table
    space: str  # a YAML under search_spaces/
    overrides: tuple[str, ...]
    rows: tuple[Row, ...]
    differences: tuple[str, ...]
    needs_data: bool = True  # a real dataset under --data-root

    @property
    def searches(self) -> bool:
        return any(r.weights == "learned" for r in self.rows)


PROTOCOLS: dict[str, Protocol] = {}


def _register(protocol: Protocol) -> None:
    PROTOCOLS[protocol.name] = protocol


_register(Protocol(
    name="unicon-mnist",
    source="UniCon, Table 2 (MNIST_1_0, k = 16): SupCon-Real 88.45, SupCon-Mixed 65.71, UniCon 90.36",
    space="digits-unicon.yaml",
    overrides=(),
    rows=(
        Row("SupCon-Real", 88.45, ("loss={supcon: {synthetic: real}}",), "ones", use_synthetic=False),
        Row("SupCon-Mixed", 65.71, ("loss={supcon: {synthetic: mixed}}",)),
        Row("UniCon, all weights 1", None, ("loss={unicon: {temperature: 0.07}}",)),
        Row("UniCon, learned (best trial)", 90.36, ("loss={unicon: {temperature: 0.07}}",), "learned"),
        Row("UniCon, oracle weights", None, ("loss={unicon: {temperature: 0.07}}",), "oracle"),
    ),
    differences=(
        "digits 5-9 of scikit-learn's 8x8 digits, not MNIST's 0 and 9: five classes whose pool mixes the "
        "paper's three kinds (five and six counter-replicated, seven a morph M(0.5), eight and nine faithful)",
        "2 real shots per class, not 16 (with more the real images saturate this task)",
        "a tiny CLIP-architecture ViT with LoRA, pretrained on digits 0-4, not a ResNet-18 from scratch",
        "12 x 20 steps, 1 encoder x 3 classifiers, 40 GP trials: scaled to a laptop (digits-unicon.yaml's header)",
    ),
    needs_data=False,
))

_register(Protocol(
    name="diffmix-cub-5shot",
    source="Diff-Mix (CVPR 2024), Table 5, CUB 5-shot: baseline 50.90, Diff-Mix (TI + DB fine-tuned SD) 59.41",
    space="cub.yaml",
    overrides=(
        "data.shots=5",
        "pool.per_class=25",  # "a multiplier of 5" of the real set
        "loss={ce: {real: 1.0, synthetic: 1.0}}",  # Diff-Mix trains one cross-entropy over real + soft-labelled synthetic
        "train.mix=none",
    ),
    rows=(
        Row("baseline (real only)", 50.90, use_synthetic=False),
        Row("Diff-Mix", 59.41),
    ),
    differences=(
        "CLIP ViT-B/16 with LoRA and a zero-shot head, not an ImageNet ResNet-50 fine-tuned whole",
        "a fixed batch of real and synthetic images, not real images replaced by synthetic ones with p = 0.3",
        "Diff-Mix's row needs its TI + DB fine-tuned generator (raysynth finetune-generator, then "
        "--set pool.options.finetuned=DIR); without it the pool is vanilla SD's (the paper's Real-Mix)",
        "raysynth's validation split is carved from the train split; the paper selects on test",
    ),
))

_DATADREAM_POOL = ("pool.mode=gen", "pool.strengths=[]", "pool.options.guidance=2.0", "pool.filter=none")
_register(Protocol(
    name="datadream-flowers-16shot",
    source="DataDream (ECCV 2024) as ICML 2025 Table 1 quotes it, Flowers102 16-shot: Real-finetune 98.7, DataDream_dset 99.4",
    space="flowers.yaml",
    overrides=(*_DATADREAM_POOL, "loss={ce: {real: 0.8, synthetic: 0.2}}"),
    rows=(
        Row("Real-finetune", 98.7, ("loss={ce: {real: 1.0, synthetic: 0.0}}",), use_synthetic=False),
        Row("DataDream (dataset-level LoRA)", 99.4),
    ),
    differences=(
        "Stable Diffusion 1.5 unless --set pool.options.model names SD 2.1 (the paper's)",
        "DataDream's generator is a dataset-level LoRA fine-tuned on the shots (raysynth finetune-generator, then "
        "--set pool.options.finetuned=DIR); without it the pool is vanilla SD's",
        "raysynth draws 16 shots from CoOp's split with its own seed; DataDream's shot files differ",
        "raysynth selects on a validation split; the papers report the last epoch on test",
    ),
))

_register(Protocol(
    name="icml25-flowers-16shot",
    source="ICML 2025 (Provably Improving Generalization...), Table 1, FLO: Real-finetune 98.7, Ours (full) 99.3",
    space="flowers.yaml",
    overrides=(*_DATADREAM_POOL,),
    rows=(
        Row("Real-finetune", 98.7, ("loss={ce: {real: 1.0, synthetic: 0.0}}",), use_synthetic=False),
        Row("Ours (full): bound loss", 99.3),
    ),
    differences=(
        "the paper's pool is DataDream's (SD 2.1 with a dataset-level LoRA, guidance 2.0): pass "
        "--set pool.options.model=... and pool.options.finetuned=DIR, else vanilla SD 1.5",
        "k-means on 32x32 pixels, not 224x224 (partition.pixel_side: the 224 cost is in flowers.yaml)",
        "the paper's full variant is one seed (0); raysynth reports the mean over --seeds",
        "ICML 2025's Table 1 has no CUB column: its ten datasets are DataDream's",
    ),
))


@dataclass
class RowResult:
    row: Row
    accuracy: float  # test accuracy in %, mean over seeds
    std: float
    seeds: int
    weights: list[float] | None = None


@dataclass
class Reproduction:
    protocol: Protocol
    rows: list[RowResult] = field(default_factory=list)
    learned: list[float] | None = None
    classes: list[str] = field(default_factory=list)


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"reproduce: unknown table '{name}' (known: {', '.join(sorted(PROTOCOLS))})")
    return PROTOCOLS[name]


def oracle_weights(classes: list[str], quality: dict[str, str]) -> list[float]:
    """Each class's quality as its weight: the share of its own images in what the
    generator learned it from (faithful 1, counter 0, morph:rho rho)."""
    from raysynth.generators.quality import parse_quality

    return [parse_quality(quality.get(c, "faithful"))[1] for c in classes]


def protocol_config(p: Protocol, space_dir: Path, overrides: list[str], row: Row | None = None, seeds: int = 1) -> Config:
    """The config a row trains: the protocol's YAML, its overrides, the user's, the row's;
    no search space (the paper's fixed setting), ``seeds`` final seeds. Without a row: the
    protocol's base config (with its search space when its method learns weights)."""
    from raysynth.validate import load_config

    # the paper's fixed setting: no search space, except for the search a learning method runs
    extra = [] if p.searches and row is None else ["search.space={}"]
    extra += [*p.overrides, *overrides, "search.final_eval=false"]
    if row is not None:
        extra += [*row.overrides, f"search.final_seeds={seeds}"]
    return load_config(space_dir / p.space, extra)


def reproduce(p: Protocol, space_dir: Path, overrides: list[str], seeds: int, storage: str, tracking_uri: str) -> Reproduction:
    """Run protocol ``p`` (see the module docstring); Ray must be connected."""
    from raysynth.context import split_of
    from raysynth.prepare import prepare
    from raysynth.search.options import SearchOptions
    from raysynth.search.run import run_search

    base = protocol_config(p, space_dir, overrides)
    split = split_of(base)
    out = Reproduction(p, classes=split.classes)
    if p.searches:  # the method learns its weights: the paper's search first (its own space)
        log.info("reproduce %s: the search", p.name)
        summary = run_search(base, SearchOptions(tracking_uri, f"reproduce-{p.name}", storage, f"reproduce-{p.name}"))
        out.learned = summary.best_weights
    configs = [protocol_config(p, space_dir, overrides, row, seeds) for row in p.rows]
    # cached: the pools and partitions the rows share are made once
    contexts = [prepare(config) for config in configs]
    weights = {"ones": None, "oracle": oracle_weights(split.classes, base.pool.quality), "learned": out.learned}

    def train(row: Row, config: Config, context) -> RowResult:
        from raysynth.train.ray_train import train_with_trainer

        cfg = dataclasses.replace(config, train=dataclasses.replace(config.train, n_contr=max(config.train.n_contr, seeds)))
        w = weights[row.weights]
        log.info("reproduce %s: '%s' over %d seeds (Ray Train, test split read once)", p.name, row.label, seeds)
        slug = "".join(ch if ch.isalnum() else "-" for ch in row.label.lower()).strip("-")
        result = train_with_trainer(cfg, w, context, row.use_synthetic, name=f"reproduce-{p.name}-{slug}", storage_path=storage, evaluate_test=True)
        metrics = dict(result.metrics or {})
        return RowResult(row, 100 * metrics["test_acc"], 100 * metrics.get("test_acc_std", 0.0), seeds, w)

    with ThreadPoolExecutor(max_workers=len(p.rows), thread_name_prefix="reproduce") as pool:
        out.rows = list(pool.map(train, p.rows, configs, contexts))
    return out


def format_reproduction(r: Reproduction) -> str:
    """The paper's numbers beside the run's, then what still differs."""
    lines = [f"{r.protocol.name}: {r.protocol.source}", "",
             "| row | published | this run | difference |", "|---|---|---|---|"]
    for res in r.rows:
        pub = f"{res.row.published:.2f}" if res.row.published is not None else "—"
        ours = f"{res.accuracy:.2f} ± {res.std:.2f} ({res.seeds} seed{'s' if res.seeds > 1 else ''})"
        diff = f"{res.accuracy - res.row.published:+.2f}" if res.row.published is not None else "—"
        lines.append(f"| {res.row.label} | {pub} | {ours} | {diff} |")
    if r.learned is not None:
        lines += ["", "learned weights (best trial): " + ", ".join(f"{c} {w:.2f}" for c, w in zip(r.classes, r.learned))]
    lines += ["", "differences that remain:"]
    lines += [f"- {d}" for d in r.protocol.differences]
    return "\n".join(lines)



def add_arguments(p) -> None:
    """The ``raysynth reproduce`` command's arguments."""
    p.add_argument("table", nargs="?", help="a table (see --list), e.g. unicon-mnist, icml25-flowers-16shot")
    p.add_argument("--list", action="store_true", help="the tables, with their sources")
    p.add_argument("--data-root", help="where the real dataset lives (the real-data tables)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--seeds", type=int, default=3, help="train seeds of every row (default 3)")
    p.add_argument("--verbose", action="store_true")


def run_command(args, space_dir: Path) -> int:
    """``raysynth reproduce``: every config checked before Ray starts, then the table."""
    from raysynth.cluster import connect_ray
    from raysynth.home import home_location
    from raysynth.logs import setup_logging
    from raysynth.storage import join
    from raysynth.tracking import default_tracking_uri

    if args.list:
        for name, p in sorted(PROTOCOLS.items()):
            print(f"{name:<26s} {p.source}")
        return 0
    if not args.table:
        raise ConfigError(f"reproduce: name a table ({', '.join(sorted(PROTOCOLS))}) or pass --list")
    p = protocol(args.table)
    if args.seeds < 1:
        raise ConfigError(f"--seeds: must be >= 1, got {args.seeds}")
    if p.needs_data and not args.data_root:
        raise ConfigError(f"reproduce {p.name}: needs --data-root (its dataset, {p.space.removesuffix('.yaml')}, in the official layout)")
    overrides = [*([f"data.root={args.data_root}"] if args.data_root else []), *(args.set or [])]
    protocol_config(p, space_dir, overrides)
    for row in p.rows:
        protocol_config(p, space_dir, overrides, row, args.seeds)
    setup_logging(verbose=args.verbose)
    connect_ray()
    result = reproduce(p, space_dir, overrides, args.seeds, join(home_location(), "tune"), default_tracking_uri())
    print(format_reproduction(result))
    return 0
