"""The ``raysynth`` command: search | pretrain | generate | finetune-generator | leaderboard | ui | dashboard | predict | reproduce.

Exit codes: 0 success; 2 bad input (one line on stderr, nothing started or written);
1 anything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from importlib import resources
from pathlib import Path

from raysynth.config import Config, ConfigError, FinetuneOptions, flag_name, from_dict, load_yaml
from raysynth.data import DATASETS
from raysynth.home import home_location
from raysynth.logs import setup_logging
from raysynth.search.searchers import SEARCHERS
from raysynth.storage import check_location, join
from raysynth.validate import load_config


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad input as one line and exit code 2."""

    def error(self, message: str):
        raise ConfigError(message)


def _space_path(args) -> Path:
    """--space, else ``search_spaces/<dataset>.yaml`` of the working directory (a
    checkout's copy, or the user's own), else the copy shipped inside the package."""
    if args.space:
        return Path(args.space)
    name = f"{args.dataset or 'digits'}.yaml"
    local = Path.cwd() / "search_spaces" / name
    if local.is_file():
        return local
    shipped = resources.files("raysynth").joinpath("search_spaces", name)
    if shipped.is_file():
        return Path(str(shipped))
    raise ConfigError(f"--space: no search space for dataset '{args.dataset}' (looked for search_spaces/{name} here and in the package)")


def _config_from_args(args) -> Config:
    if args.dataset and args.dataset not in DATASETS:
        raise ConfigError(f"--dataset: unknown or not yet available dataset '{args.dataset}' (available: {DATASETS.known()})")
    path = _space_path(args)
    # the dataset: --dataset, else the --space file's, else digits; never two that disagree
    named = load_yaml(path).get("dataset") if args.space else None
    if args.dataset and named and named != args.dataset:
        raise ConfigError(f"--space: {path} is a search space for dataset '{named}', not --dataset {args.dataset}; "
                          "give one of the two, or the space for that dataset")
    dataset = args.dataset or named or "digits"
    # the flags' values as they are (typed by argparse), then --set's YAML values
    flags = {"dataset": dataset, "data.root": getattr(args, "data_root", None), "search.trials": getattr(args, "trials", None),
             "search.concurrency": getattr(args, "concurrency", None), "search.seed": getattr(args, "seed", None),
             "search.algorithm": getattr(args, "algorithm", None)}
    overrides = [(key, value) for key, value in flags.items() if value is not None]
    return load_config(path, overrides + (args.set or []))


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help=f"a registered dataset: {DATASETS.known()} (default: the --space file's, else digits)")
    p.add_argument("--data-root", help="where a real dataset lives")
    p.add_argument("--space", help="search-space YAML (default search_spaces/<dataset>.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--verbose", action="store_true", help="Ray's own INFO lines on the console too (checkpoints, reports, Ray Data progress)")


def _add_option_flags(p: argparse.ArgumentParser, cls: type, skip=(), required=()) -> None:
    """One flag per field of an options dataclass: its type and help text the field's;
    :func:`raysynth.config.from_dict` checks the values against the field's rules."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if f.default is False:
            p.add_argument(flag_name(f.name), action="store_true", default=None, help=f.metadata["help"])
            continue
        kind = next((t for t in (int, float, str) if t is hints[f.name] or t in typing.get_args(hints[f.name])), str)
        default = f" (default {f.default})" if f.default not in ("", None) else ""
        p.add_argument(flag_name(f.name), type=kind, required=f.name in required, help=f"{f.metadata['help']}{default}")


def _options_from_args(args, cls: type, **extra):
    """The options dataclass from its flags (those given) and ``extra``: coerced and
    checked by the fields' rules, errors naming the flag."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    return from_dict(cls, {**given, **extra}, flags=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="raysynth", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("search", help="run a hyperparameter search (the main job)")
    _add_config_flags(p)
    p.add_argument("--trials", type=int, help="number of trials")
    p.add_argument("--concurrency", type=int, help="trials run at once")
    p.add_argument("--seed", type=int, help="searcher seed")
    p.add_argument("--algorithm", help=f"a registered searcher: {SEARCHERS.known()}")
    p.add_argument("--tracking-uri", help="MLflow store (default sqlite:///$RAYSYNTH_HOME/mlflow.db)")
    p.add_argument("--experiment", help="MLflow experiment (default: the dataset name)")
    p.add_argument("--storage", help="where Ray Tune keeps search state: a path, a shared mount or s3:// / gs:// (default $RAYSYNTH_HOME/tune)")
    p.add_argument("--name", help="name of the search (needed with --resume)")
    p.add_argument("--resume", nargs="?", const="yes", default=None, metavar="auto",
                   help="resume the interrupted search --name; '--resume auto': resume it if it exists, else start it "
                        "(a job that can simply be submitted again)")
    p.add_argument("--optuna-storage", metavar="URL", help="RDB URL of the Optuna searchers' study (default sqlite:///<storage>/<name>/optuna.db)")
    p.add_argument("--warm-start", metavar="SOURCE", help="seed the searcher with the finished trials of an MLflow experiment or of a search's parent run id (compatible spaces only)")
    p.add_argument("--register", metavar="NAME", help="register the searched model in MLflow's Model Registry under NAME")
    p.add_argument("--quiet", action="store_true", help="no progress lines; only the final summary")

    p = sub.add_parser("pretrain", help="pretrain the backbone on the base classes (cached)")
    _add_config_flags(p)
    p.add_argument("--force", action="store_true", help="retrain even if cached")

    p = sub.add_parser("generate", help="generate the synthetic pool(s) of a config (cached)")
    _add_config_flags(p)

    p = sub.add_parser("finetune-generator", help="fine-tune Stable Diffusion on the shots (UNet LoRA + one token per class)")
    _add_config_flags(p)
    _add_option_flags(p, FinetuneOptions, skip=("seed",), required=("model",))
    p.add_argument("--output", help="result directory (default $RAYSYNTH_HOME/generators/finetuned/<dataset>-<key>)")

    p = sub.add_parser("leaderboard", help="finished trials ordered by validation accuracy (or --sort)")
    p.add_argument("--experiment", help="MLflow experiment (default: every experiment)")
    p.add_argument("--tag", action="append", metavar="KEY=VALUE", help="filter, e.g. dataset=digits, algorithm=skopt-gp (repeatable)")
    p.add_argument("--sort", default="val_acc", metavar="METRIC", help="metric to sort by (default val_acc)")
    p.add_argument("--ascending", action="store_true", help="smallest first (for losses)")
    p.add_argument("--top", type=int, default=None)
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--all", action="store_true", help="include trials stopped early by ASHA")
    p.add_argument("--compare", nargs=2, metavar="RUN_ID", help="show two runs side by side (fields that differ)")
    p.add_argument("--tracking-uri")

    p = sub.add_parser("dashboard", help="start optuna-dashboard on 127.0.0.1 for a search's Optuna study")
    p.add_argument("--name", required=True, help="the search (its --name)")
    p.add_argument("--storage", help="the search's --storage (default $RAYSYNTH_HOME/tune)")
    p.add_argument("--optuna-storage", metavar="URL", help="the study's RDB URL, if the search was given one")
    p.add_argument("--port", type=int, default=8080)

    p = sub.add_parser("predict", help="classify image files with a searched model: prints path<TAB>class<TAB>probability")
    p.add_argument("--model-uri", required=True, help="runs:/<parent run id>/model, models:/<name>/<version> or a model directory")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files, or folders (their images, recursively)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--tracking-uri", help="MLflow store the URI refers to (default sqlite:///$RAYSYNTH_HOME/mlflow.db)")

    from raysynth.reproduce import add_arguments

    add_arguments(sub.add_parser("reproduce", help="one published table: the paper's protocol, its numbers beside this run's"))

    p = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for the project's store")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--tracking-uri")
    return parser


def _tracking_uri(args) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the home's sqlite store: one that
    exists (reading a store that is not there would create an empty one)."""
    from raysynth.tracking.stores import check_tracking_store, default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri()
    flag = "MLFLOW_TRACKING_URI" if not args.tracking_uri and os.environ.get("MLFLOW_TRACKING_URI") else "--tracking-uri"
    check_tracking_store(uri, flag, existing=True)
    return uri


def cmd_search(args) -> int:
    from raysynth.search.preflight import search_options
    from raysynth.search.results import format_summary
    from raysynth.search.run import run_search

    if args.quiet and args.verbose:
        raise ConfigError("--quiet and --verbose: give one (no progress lines, or Ray's own lines too)")
    config = _config_from_args(args)
    options = search_options(
        config, tracking_uri=args.tracking_uri, experiment=args.experiment, storage=args.storage, name=args.name,
        resume=args.resume, warm_start=args.warm_start, optuna_storage=args.optuna_storage, register=args.register,
    )
    setup_logging(quiet=args.quiet, verbose=args.verbose)
    if args.resume == "auto":
        logging.getLogger(__name__).info("--resume auto: %s search '%s'", "resuming the" if options.resume else "starting the new", options.name)
    summary = run_search(config, options)
    print(format_summary(summary))
    print(f"MLflow: {options.tracking_uri} experiment '{options.experiment}', parent run {summary.parent_run_id}")
    return 0


def cmd_pretrain(args) -> int:
    from raysynth.prepare.commands import pretrain_command

    config = _config_from_args(args)
    setup_logging(verbose=args.verbose)
    print(pretrain_command(config, force=args.force))
    return 0


def cmd_generate(args) -> int:
    from raysynth.prepare.commands import generate_command
    from raysynth.search.space import parse_space

    config = _config_from_args(args)
    setup_logging(verbose=args.verbose)
    generate_command(config, parse_space(config.search.space, config).plan(config))
    return 0


def cmd_finetune_generator(args) -> int:
    from raysynth.prepare.commands import finetune_generator_command

    if args.output and Path(args.output).exists() and not (Path(args.output) / "tokens.json").is_file():
        raise ConfigError(
            f"--output: {args.output} exists and is not a generator raysynth wrote (no tokens.json); "
            "raysynth replaces only its own results: choose a new directory"
        )
    config = _config_from_args(args)
    options = _options_from_args(args, FinetuneOptions, seed=config.train.seed)
    setup_logging(verbose=args.verbose)
    out = finetune_generator_command(config, options, Path(args.output) if args.output else None)
    print(out)
    print(f"use it: --set pool.generator=stable_diffusion --set pool.options.model={args.model} --set pool.options.finetuned={out}")
    return 0


def cmd_dashboard(args) -> int:
    from raysynth.search.options import study_storage
    from raysynth.search.preflight import NAME, check_study_storage

    if not NAME.fullmatch(args.name):
        raise ConfigError(f"--name: '{args.name}' is not a plain name (letters, digits, '.', '_', '-'; no '/' or '..')")
    _check_port(args.port)
    if args.optuna_storage is not None:
        check_study_storage(args.optuna_storage)
    storage = check_location(args.storage, "--storage") if args.storage else join(home_location(), "tune")
    url = study_storage(storage, args.name, args.optuna_storage)
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).is_file():
        raise ConfigError(f"--name: no Optuna study of a search '{args.name}' ({url}); only optuna-tpe and optuna-gp searches keep one")
    try:
        import optuna_dashboard
    except ImportError:
        raise ConfigError("raysynth dashboard needs optuna-dashboard: pip install 'raysynth[dashboard]'") from None
    print(f"optuna-dashboard for study '{args.name}' ({url}): http://127.0.0.1:{args.port}/dashboard/", flush=True)
    optuna_dashboard.run_server(url, host="127.0.0.1", port=args.port)
    return 0


def cmd_leaderboard(args) -> int:
    from raysynth.tracking.leaderboard import compare_runs, format_rows, leaderboard_rows

    uri = _tracking_uri(args)
    if args.compare:
        print(format_rows(compare_runs(uri, *args.compare), args.format, numbered=False))
        return 0
    if args.top is not None and args.top < 1:
        raise ConfigError(f"--top: must be >= 1, got {args.top}")
    tags = {}
    for item in args.tag or []:
        if "=" not in item:
            raise ConfigError(f"--tag expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        tags[key] = value
    rows = leaderboard_rows(uri, args.experiment, args.top, args.all, metric=args.sort, tags=tags, ascending=args.ascending)
    print(format_rows(rows, args.format))
    return 0


def cmd_predict(args) -> int:
    from raysynth.tracking.model import classify_files, image_files, load_classifier

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {args.batch_size}")
    files = image_files(args.paths)
    tracking_uri = _tracking_uri(args) if args.model_uri.startswith(("runs:/", "models:/")) else None
    if ":/" not in args.model_uri and not (Path(args.model_uri) / "MLmodel").is_file():
        raise ConfigError(f"--model-uri: {args.model_uri} is not an MLflow model directory (no MLmodel file in it)")
    try:
        classifier = load_classifier(args.model_uri, tracking_uri)
    except Exception as exc:  # MLflow raises several kinds for a URI that leads nowhere
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--model-uri: cannot load a raysynth model from {args.model_uri} ({first})") from None
    for path, name, prob in classify_files(classifier, files, args.batch_size):
        print(f"{path}\t{name}\t{prob:.4f}", flush=True)
    return 0


def ui_command(args, uri: str) -> list[str]:
    """The MLflow UI server: 127.0.0.1 unless the user passes --host."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", args.host, "--port", str(args.port)]


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port: must be in [1, 65535], got {port}")


def cmd_ui(args) -> int:
    import subprocess

    _check_port(args.port)
    uri = _tracking_uri(args)
    print(f"MLflow UI for {uri}: http://{args.host}:{args.port}", flush=True)
    return subprocess.call(ui_command(args, uri))


def cmd_reproduce(args) -> int:
    from raysynth.reproduce import run_command

    space = _space_path(argparse.Namespace(space=None, dataset="digits"))  # the search spaces' folder
    return run_command(args, Path(str(space)).parent)


COMMANDS = {
    "search": cmd_search,
    "pretrain": cmd_pretrain,
    "generate": cmd_generate,
    "finetune-generator": cmd_finetune_generator,
    "leaderboard": cmd_leaderboard,
    "ui": cmd_ui,
    "predict": cmd_predict,
    "dashboard": cmd_dashboard,
    "reproduce": cmd_reproduce,
}


def _resource_wait(exc: BaseException) -> str | None:
    """The ResourceWaitError in an exception's chain (Tune wraps a callback's), if any."""
    from raysynth.cluster import ResourceWaitError

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ResourceWaitError):
            return str(exc)
        exc = exc.__cause__ or exc.__context__
    return None


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"raysynth: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        # work that waited search.resource_wait_s for resources: one line, exit 1
        waited = _resource_wait(exc)
        if waited is None:
            raise
        print(f"raysynth: error: {waited}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("raysynth: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
