"""The command-line contract: bad input -> exit 2, one line on stderr, nothing written."""

import pytest
from conftest import REPO, run_job

from raysynth.cli import main
from raysynth.context import split_of


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--dataset", "mnist-nope"], "--dataset"),
        (["--set", "train.nope=1"], "train.nope"),
        (["--set", "train.epochs"], "key=value"),
        (["--trials", "zero"], "--trials"),
        (["--algorithm", "grid"], "search.algorithm"),
        (["--space", "/nonexistent/space.yaml"], "not found"),
        (["--set", "pool.quality.eleven=counter"], "pool.quality"),
        (["--set", "loss={bound: {lam1: -0.1}}", "--set", "search.space={}"], "loss.bound.lam1"),
        (["--set", "pool.generator=stable_diffusion", "--set", "pool.options.model=/nonexistent/sd"], "pool.options.model"),
        (["--set", "pool.generator=ddpm", "--set", "pool.options.resolution=7"], "pool.options.resolution"),
        (["--set", "pool.filter=bottom"], "pool.clip_model"),
        (["--set", "pool.mode=remix"], "pool.mode"),
        (["--set", "pool.strength=1.5"], "pool.strength: must be in (0, 1]"),
        (["--set", "pool.strengths=[0.5, 1.5]"], "pool.strengths[1]: must be in (0, 1], got 1.5"),
        (["--set", "pool.strengths=[0.5, 0.9]", "--set", "search.space.pool.strength={type: choice, values: [0.5, 0.9]}"],
         "search.space.pool.strength: pool.strengths draws every image's strength"),
        (["--set", "partition.clusters_per_class=0"], "partition.clusters_per_class: must be > 0"),
        (["--set", "train.steps_per_epoch=once"], "train.steps_per_epoch: must be an integer >= 1 or 'pass', got 'once'"),
        (["--set", "train.mix_p=1.5"], "train.mix_p: must be in [0, 1], got 1.5"),
        (["--set", "search.space.pool.strengths={type: choice, values: [nope]}"],
         "search.space.pool.strengths.values[0]: 'nope' is not a name in pool.strength_sets (known: none)"),
        (["--resume", "--name", "s1"], "--resume: no search named 's1'"),
        (["--resume", "yes please", "--name", "s1"], "--resume: takes no value or 'auto', got 'yes please'"),
        (["--resume", "auto"], "--resume auto needs --name of the search to resume"),
        # issue 14's list: each of these once started Ray, hung or ended in a traceback
        (["--set", "train.weight_decay=.nan"], "train.weight_decay: must be a finite number, got nan"),
        (["--set", "loss.ce.real=nan"], "loss.ce.real"),
        (["--set", "search.space.pool.strength={type: choice, values: [0.5, 1.5]}"], "search.space.pool.strength.values[1]: must be in (0, 1], got 1.5"),
        (["--set", "search.space.train.batch_real={type: int, low: 0, high: 3}"], "search.space.train.batch_real.low: must be >= 1, got 0"),
        (["--set", "search.space.train.lr={type: uniform, low: 0.001, high: .inf}"], "search.space.train.lr.high: must be a finite number"),
        (["--set", "search.space={}"], "search.space: empty"),
        (["--warm-start", "no-such-search"], "--warm-start: no MLflow experiment or run 'no-such-search'"),
        (["--name", "../x"], "--name: '../x' is not a plain name"),
        (["--register", "a/b"], "--register: 'a/b' is not a plain model name"),
        (["--register", "digits-model", "--set", "search.final_eval=false"], "--register: needs search.final_eval"),
        (["--name", "/tmp/abs"], "--name: '/tmp/abs' is not a plain name"),
        (["--storage", "foo://bucket/x"], "--storage: no filesystem serves 'foo://'"),
        (["--storage", "s3:///x"], "--storage: s3:///x names no bucket"),
        (["--set", "train.lr=2024-01-01"], "train.lr: got the date 2024-01-01"),
        (["--set", "model.name=ViT-Nope"], "model.name: unknown open_clip model 'ViT-Nope'"),
        (["--set", "pool.clip_model=ViT-Nope"], "pool.clip_model: unknown open_clip model 'ViT-Nope'"),
        # issue 30: values outside their meaning, each once accepted (a search started)
        (["--set", "model.lora.dropout=2"], "model.lora.dropout: must be in [0, 1), got 2.0"),
        (["--set", "train.weight_decay=-0.1"], "train.weight_decay: must be >= 0, got -0.1"),
        (["--set", "data.test_per_class=-1"], "data.test_per_class: must be >= 0, got -1"),
        (["--set", "search.scheduler.grace_period=0"], "search.scheduler.grace_period: must be >= 1, got 0"),
        (["--set", "search.scheduler.reduction_factor=1"], "search.scheduler.reduction_factor: must be > 1, got 1.0"),
        (["--set", "model.lora.target_modules=[nope]"], "model.lora.target_modules[0]: no layer of raysynth-tiny's vision tower"),
        (["--seed", "-1"], "search.seed: must be in [0, 4294967295], got -1"),
        (["--set", "data.seed=-1"], "data.seed: must be in [0, 4294967295], got -1"),
        (["--set", "data.image_size=100000"], "data.image_size: must be in [8, 1024], got 100000"),
        # a searched dimension checked whole: the field's type, a tie after its factor, fixed fields
        (["--set", "search.space.train.batch_real={type: uniform, low: 8, high: 16}"],
         "search.space.train.batch_real.type: 'uniform' draws real numbers and train.batch_real is an integer field"),
        (["--set", "search.space.train.epochs={type: int, low: 0, high: 3}"], "search.space.train.epochs: cannot be searched: ASHA's max_t"),
        (["--set", "search.space.train.weight_decay={type: tie, to: train.lr, factor: -10}"],
         "search.space.train.weight_decay.factor (x train.lr.value = -0.02): must be >= 0"),
        (["--set", "search.space.pool.per_class={type: choice, values: [8, 16]}"], "search.space.pool.per_class: cannot be searched: the pools are made once"),
        (["--set", "search.space.model.name={type: choice, values: [raysynth-tiny]}"], "search.space.model.name: cannot be searched: the backbone"),
        (["--set", "search.space.model.pretrained={type: choice, values: [a.pt, b.pt]}"], "search.space.model.pretrained: cannot be searched: the backbone"),
        # URIs opened, names within MLflow's limits, contradictory flags
        (["--tracking-uri", "foo://bar"], "--tracking-uri: MLflow knows no tracking store 'foo://'"),
        (["--tracking-uri", "sqlite://"], "--tracking-uri: sqlite:// is an in-memory database that loses every run"),
        (["--optuna-storage", "not a url"], "--optuna-storage: 'not a url' is not a database URL"),
        (["--optuna-storage", "sqlite://"], "--optuna-storage: sqlite:// is an in-memory database"),
        (["--experiment", "x" * 501], "--experiment: 501 characters; MLflow takes at most 500"),
        (["--quiet", "--verbose"], "--quiet and --verbose: give one"),
        (["--storage", "~nosuchuser-raysynth/tune"], "--storage: ~nosuchuser-raysynth/tune: no home directory for '~nosuchuser-raysynth'"),
        (["--tracking-uri", "sqlite:///~nosuchuser-raysynth/m.db"], "--tracking-uri: ~nosuchuser-raysynth/m.db: no home directory for"),
        (["--dataset", "cub", "--data-root", "~nosuchuser-raysynth/cub"], "data.root: ~nosuchuser-raysynth/cub: no home directory for"),
        (["--set", "model.pretrained=~nosuchuser-raysynth/x.pt"], "model.pretrained: ~nosuchuser-raysynth/x.pt: no home directory for"),
        (["--dataset", "cub", "--space", str(REPO / "search_spaces" / "digits.yaml")],
         "is a search space for dataset 'digits', not --dataset cub"),
        (["--set", "search.space={train.lr: {type: uniform, low: 0.1, high: 0.2, low: 0.3}}"], "key 'low' given twice in one mapping"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, needle):
    """The command's own entry point, in this process (a subprocess per case would spend
    seconds importing the stack; ``test_the_job_script_exits_2_with_one_line`` runs the
    real job script)."""
    home = tmp_path / "home"
    monkeypatch.setenv("RAYSYNTH_HOME", str(home))
    assert main(["search", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in lines[0]
    assert not (home / "mlflow.db").exists() and not (home / "tune").exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--model-uri", "runs:/0123456789abcdef/model", "{images}"], "--tracking-uri: no MLflow store at"),
        (["--model-uri", "runs:/0123456789abcdef/model", "--tracking-uri", "sqlite:///{store}", "{images}"],
         "--model-uri: cannot load a raysynth model from runs:/0123456789abcdef/model"),
        (["--model-uri", "{home}/no-model", "{images}"], "--model-uri: {home}/no-model is not an MLflow model directory"),
        (["--model-uri", "runs:/x/model", "{home}/missing.png"], "missing.png: no such file or folder"),
        (["--model-uri", "runs:/x/model", "{home}"], "no image files"),
        (["--model-uri", "runs:/x/model", "--batch-size", "0", "{images}"], "--batch-size: must be >= 1"),
    ],
)
def test_predict_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, capsys, args, needle):
    from mlflow import MlflowClient

    home = tmp_path / "home"
    images = tmp_path / "images"
    home.mkdir(), images.mkdir()
    (images / "x.png").write_bytes(b"")
    store = tmp_path / "mlflow.db"
    MlflowClient(f"sqlite:///{store}").search_experiments()  # an existing, empty store
    capsys.readouterr()
    monkeypatch.setenv("RAYSYNTH_HOME", str(home))
    assert main(["predict", *[a.format(home=home, images=images, store=store) for a in args]]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle.format(home=home) in lines[0] and "Traceback" not in lines[0], lines
    assert not (home / "mlflow.db").exists()


def test_malformed_yaml_exits_2(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  trials: [3\n")
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    assert main(["search", "--space", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "malformed YAML" in err
    assert not (tmp_path / "home").exists()


def _laughs(path):
    """Nine levels of nine aliases: 9**9 values once expanded (a 'billion laughs')."""
    lines, prev = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]'], "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
        prev = name
    path.write_text("\n".join(lines) + "\nsearch: {space: {}}\n")


@pytest.mark.parametrize("write, needle", [
    (lambda p: p.write_bytes(bytes(range(256)) * 4), "is not a text (UTF-8) YAML file"),
    (lambda p: p.mkdir(), "is a directory, not a YAML file"),
    (lambda p: p.write_text("a: &a [*a]\n"), "a recursive YAML anchor"),
    (_laughs, "expands to more than 100000 values"),
    (lambda p: p.write_text("train: {lr: .nan}\n"), "train.lr: must be a finite number, got nan"),
    (lambda p: p.write_text("train: {lr: 2024-01-01}\n"), "train.lr: got the date 2024-01-01"),
    (lambda p: p.write_text("train:\n  lr: 0.01\ntrain:\n  epochs: 2\n"), "key 'train' given twice in one mapping (YAML would keep only the last)"),
])
def test_bad_space_files_exit_2(tmp_path, monkeypatch, capsys, write, needle):
    space = tmp_path / "space.yaml"
    write(space)
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    assert main(["search", "--space", str(space)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "home").exists()


def test_data_root_that_is_not_an_archive_exits_2(tmp_path, monkeypatch, capsys):
    fake = tmp_path / "CUB_200_2011.tgz"
    fake.write_text("not a tar")
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    assert main(["search", "--dataset", "cub", "--data-root", str(fake)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "is named like an archive but is not a readable tar or zip file" in lines[0]
    assert not (tmp_path / "home" / "datasets").exists()


def test_a_home_uri_no_filesystem_serves_is_refused_not_made_a_local_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYSYNTH_HOME", "foo://bucket/home")
    assert main(["search"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "RAYSYNTH_HOME: no filesystem serves 'foo://'" in lines[0]
    assert not (tmp_path / "foo:").exists()


def test_a_used_name_is_never_reused_silently(tmp_path, monkeypatch, capsys):
    """The final retraining of a reused name once found the old search's checkpoints."""
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    old = tmp_path / "home" / "tune" / "s1"
    old.mkdir(parents=True)
    assert main(["search", "--name", "s1"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--name: a search named 's1' already exists" in lines[0] and "--resume" in lines[0]
    assert list(old.iterdir()) == [] and not (tmp_path / "home" / "mlflow.db").exists()


def test_finetune_generator_never_replaces_a_directory_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("years of work")
    assert main(["finetune-generator", "--model", "/nonexistent/sd", "--output", str(mine)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--output" in lines[0] and "is not a generator raysynth wrote" in lines[0]
    assert (mine / "chapter1.tex").read_text() == "years of work"


def test_leaderboard_unknown_experiment(tmp_path, capsys):
    from mlflow import MlflowClient

    MlflowClient(f"sqlite:///{tmp_path / 'm.db'}").search_experiments()  # an existing, empty store
    assert main(["leaderboard", "--experiment", "nope", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


def test_finetune_generator_bad_model_exits_2_before_starting_ray(capsys):
    import ray

    before = ray.is_initialized()  # a session-wide Ray may already be up in this process
    assert main(["finetune-generator", "--model", "/nonexistent/sd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pool.options.model" in err[0]
    assert ray.is_initialized() == before


@pytest.mark.parametrize("args, needle", [
    (["--storage", "/proc/raysynth-nope"], "--storage: cannot write"),
    (["--tracking-uri", "http://127.0.0.1:9"], "--tracking-uri: no MLflow server answers"),
])
def test_environment_bad_input_exits_2(tmp_path, monkeypatch, capsys, args, needle):
    home = tmp_path / "home"
    monkeypatch.setenv("RAYSYNTH_HOME", str(home))
    assert main(["search", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in lines[0]
    assert not (home / "mlflow.db").exists()


def test_an_unreachable_ray_address_exits_2(tmp_path):
    """A job script of its own: this process may already hold the session's Ray."""
    home = tmp_path / "home"
    result = run_job([], env={"RAYSYNTH_HOME": str(home), "RAY_ADDRESS": "127.0.0.1:9"}, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert "RAY_ADDRESS=127.0.0.1:9: no Ray cluster reachable" in lines[-1] and "Traceback" not in result.stderr
    assert not (home / "mlflow.db").exists()


def test_resume_with_another_config_is_refused(tmp_path, tiny_config):
    import json

    from raysynth.config import ConfigError
    from raysynth.search.options import CONFIG_RECORD, SearchOptions
    from raysynth.search.preflight import preflight

    options = SearchOptions(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="x", storage=tmp_path / "tune", name="s1", resume=True)
    (tmp_path / "tune" / "s1").mkdir(parents=True)
    (tmp_path / "tune" / "s1" / CONFIG_RECORD).write_text(json.dumps(tiny_config.to_dict(), sort_keys=True))
    preflight(tiny_config, options, split_of(tiny_config).classes)  # the same config resumes
    tiny_config.train.lr = 0.5
    with pytest.raises(ConfigError, match=r"--resume: search 's1' was started with another config \(train.lr"):
        preflight(tiny_config, options, split_of(tiny_config).classes)


def test_resume_with_other_options_is_refused(tmp_path, tiny_config):
    """--experiment, --tracking-uri and --concurrency of a resumed search are the ones it
    was started with (the record written when it starts)."""
    import dataclasses

    from raysynth.config import ConfigError
    from raysynth.search.options import CONFIG_RECORD, SearchOptions
    from raysynth.search.preflight import config_record, preflight

    options = SearchOptions(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="x", storage=tmp_path / "tune", name="s1", resume=True)
    (tmp_path / "tune" / "s1").mkdir(parents=True)
    (tmp_path / "tune" / "s1" / CONFIG_RECORD).write_text(config_record(tiny_config, options))
    preflight(tiny_config, options, split_of(tiny_config).classes)
    for changed, needle in (
        (dataclasses.replace(options, experiment="y"), "--experiment 'x', not 'y'"),
        (dataclasses.replace(options, tracking_uri=f"sqlite:///{tmp_path}/other.db"), "--tracking-uri"),
    ):
        with pytest.raises(ConfigError, match=needle):
            preflight(tiny_config, changed, split_of(tiny_config).classes)
    tiny_config.search.concurrency += 1
    with pytest.raises(ConfigError, match=r"search.concurrency \(--concurrency\)"):
        preflight(tiny_config, options, split_of(tiny_config).classes)


@pytest.mark.parametrize("args, needle", [
    (["--set", "pool.actors=16"], "pool.actors: 16 units of"),
    (["--set", "resources.trial.gpu=1"], "resources.trial: one unit asks for {CPU: 1, GPU: 1}, more than any node"),
    (["--set", "resources.final.gpu=lots"], "resources.final.gpu: must be a number >= 0 or 'auto'"),
])
def test_work_no_node_can_hold_exits_2(ray_session, tmp_path, monkeypatch, capsys, args, needle):
    """Once waited forever (a placement group or trials pending); the session's Ray has
    2 CPUs and no GPU, and no autoscaler to add one."""
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    assert main(["search", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines
    assert not (tmp_path / "home" / "mlflow.db").exists()


def test_waiting_for_resources_is_bounded(ray_session, tmp_path, monkeypatch, capsys):
    """Every CPU held elsewhere: a reservation (generation actors, preparation tasks), the
    search's node check (one trial's unit, placed before anything is generated) and
    trials pending with none running each give up after search.resource_wait_s with one
    line naming what they asked for and what is free (exit 1)."""
    import time

    from conftest import tiny_overrides
    from ray.tune.experiment import Trial
    from ray.util.placement_group import placement_group, remove_placement_group

    from raysynth.cluster import ResourceWaitError, wait_for_resources
    from raysynth.prepare import prepare
    from raysynth.cluster import pending_timeout
    from raysynth.validate import load_config

    sets = [*tiny_overrides(), "search.resource_wait_s=2"]
    prepare(load_config(REPO / "search_spaces" / "digits.yaml", sets))  # cached: the trials are what waits
    held = placement_group([{"CPU": 2}])
    ray_session.get(held.ready(), timeout=60)
    try:
        with pytest.raises(ResourceWaitError, match=r"generation: waited \d+ s \(search.resource_wait_s\) for 2 x \{CPU: 1\}"):
            wait_for_resources([{"CPU": 1}] * 2, "generation", 1)
        code = main(["search", *[a for s in sets for a in ("--set", s)]])
        err = capsys.readouterr().err

        # trials that lose their resources after the node check: Tune's callback gives up too
        waiting = pending_timeout(0.2, {"CPU": 1.0})
        waiting.on_step_begin(0, [Trial("t", stub=True)])
        time.sleep(0.3)
        with pytest.raises(ResourceWaitError, match=r"trials: waited 0 s \(search.resource_wait_s\) for 1 x \{CPU: 1\}"):
            waiting.on_step_begin(1, [Trial("t", stub=True)])
    finally:
        remove_placement_group(held)
    last = err.strip().splitlines()[-1]  # after the search's own log lines: the one error line
    # (an in-process run's log handlers may outlive an earlier test's captured stream:
    # "--- Logging error ---" is that, not the search)
    assert code == 1 and "ResourceWaitError" not in err, err[-2000:]
    assert last.startswith("raysynth: error: node check (one trial's resources): waited") and "search.resource_wait_s" in last
    assert "free now {" in last

    # with its resources free, a pending trial is starting (its actor importing torch on
    # a busy node), not waiting: no error, and the clock starts again
    deadline = time.time() + 30
    while ray_session.available_resources().get("CPU", 0) < 1 and time.time() < deadline:
        time.sleep(0.1)  # the group's CPUs return to the pool
    starting = pending_timeout(0.2, {"CPU": 1.0})
    starting.on_step_begin(0, [Trial("t", stub=True)])
    time.sleep(0.3)
    starting.on_step_begin(1, [Trial("t", stub=True)])


@pytest.mark.parametrize("command, args, needle", [
    ("leaderboard", ["--tracking-uri", "foo://bar"], "--tracking-uri: MLflow knows no tracking store 'foo://'"),
    ("leaderboard", ["--tracking-uri", "sqlite:///{tmp}/none.db"], "--tracking-uri: no MLflow store at {tmp}/none.db"),
    ("leaderboard", ["--tracking-uri", "http://127.0.0.1:9"], "--tracking-uri: no MLflow server answers at http://127.0.0.1:9"),
    ("ui", ["--tracking-uri", "sqlite://"], "--tracking-uri: sqlite:// is an in-memory database"),
    ("ui", ["--port", "0"], "--port: must be in [1, 65535], got 0"),
    ("pretrain", ["--set", "model.lora.dropout=-1"], "model.lora.dropout: must be in [0, 1), got -1.0"),
    ("generate", ["--set", "pool.seed=-3"], "pool.seed: must be in [0, 4294967295], got -3"),
    ("pretrain", ["--set", "model.pretrained={tmp}/junk.pt"], "model.pretrained: {tmp}/junk.pt is not a checkpoint of raysynth-tiny"),
    ("dashboard", ["--name", "../x"], "--name: '../x' is not a plain name"),
    ("dashboard", ["--name", "s1", "--optuna-storage", "not a url"], "--optuna-storage: 'not a url' is not a database URL"),
    ("dashboard", ["--name", "s1", "--port", "70000"], "--port: must be in [1, 65535], got 70000"),
])
def test_every_subcommand_holds_the_contract(tmp_path, monkeypatch, capsys, command, args, needle):
    """The same rules for values, files and URIs in every subcommand; nothing written."""
    home = tmp_path / "home"
    monkeypatch.setenv("RAYSYNTH_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert main([command, *[a.format(tmp=tmp_path) for a in args]]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle.format(tmp=tmp_path) in lines[0] and "Traceback" not in lines[0], lines
    assert not home.exists() and not (tmp_path / "none.db").exists()


def test_a_home_of_no_such_user_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYSYNTH_HOME", "~nosuchuser-raysynth/home")
    assert main(["search"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "RAYSYNTH_HOME: ~nosuchuser-raysynth/home: no home directory for" in lines[0], lines


def test_an_mlflow_tracking_uri_from_the_environment_is_named_as_such(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "mlflow-nope://x")
    assert main(["search"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("raysynth: error: MLFLOW_TRACKING_URI: MLflow knows no tracking store"), lines
