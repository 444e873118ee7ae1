"""The command-line contract: bad input -> exit 2, one line on stderr, nothing written."""

import pytest
from conftest import run_job

from raysynth.cli import main


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
        (["--set", "partition.clusters_per_class=0"], "partition.clusters_per_class: must be > 0"),
        (["--resume", "--name", "s1"], "--resume: no search named 's1'"),
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


@pytest.mark.parametrize("args, needle", [
    (["--set", "pool.mode=remix"], "pool.mode: must be 'mix', 'aug' or 'gen', got 'remix'"),
    (["--resume", "--name", "s1"], "--resume: no search named 's1'"),
])
def test_the_job_script_exits_2_with_one_line(tmp_path, args, needle):
    home = tmp_path / "home"
    result = run_job(args, env={"RAYSYNTH_HOME": str(home)}, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
    assert not (home / "mlflow.db").exists() and not (home / "tune").exists()


def test_malformed_yaml_exits_2(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  trials: [3\n")
    monkeypatch.setenv("RAYSYNTH_HOME", str(tmp_path / "home"))
    assert main(["search", "--space", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "malformed YAML" in err
    assert not (tmp_path / "home").exists()


def test_leaderboard_unknown_experiment(tmp_path, capsys):
    assert main(["leaderboard", "--experiment", "nope", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


def test_finetune_generator_bad_model_exits_2_before_starting_ray(capsys):
    import ray

    before = ray.is_initialized()  # a session-wide Ray may already be up in this process
    assert main(["finetune-generator", "--model", "/nonexistent/sd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pool.options.model" in err[0]
    assert ray.is_initialized() == before


@pytest.mark.parametrize("args, env, needle", [
    (["--storage", "/proc/raysynth-nope"], {}, "--storage: cannot write"),
    (["--tracking-uri", "http://127.0.0.1:9"], {}, "--tracking-uri: no MLflow server answers"),
    ([], {"RAY_ADDRESS": "127.0.0.1:9"}, "RAY_ADDRESS=127.0.0.1:9: no Ray cluster reachable"),
])
def test_environment_bad_input_exits_2(tmp_path, args, env, needle):
    home = tmp_path / "home"
    result = run_job(args, env={"RAYSYNTH_HOME": str(home), **env}, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert needle in lines[-1] and "Traceback" not in result.stderr
    assert not (home / "mlflow.db").exists()


def test_resume_with_another_config_is_refused(tmp_path, tiny_config):
    import json

    from raysynth.config import ConfigError
    from raysynth.search.options import CONFIG_RECORD, SearchOptions
    from raysynth.search.preflight import preflight

    options = SearchOptions(tracking_uri=f"sqlite:///{tmp_path}/m.db", experiment="x", storage=tmp_path / "tune", name="s1", resume=True)
    (tmp_path / "tune" / "s1").mkdir(parents=True)
    (tmp_path / "tune" / "s1" / CONFIG_RECORD).write_text(json.dumps(tiny_config.to_dict(), sort_keys=True))
    preflight(tiny_config, options)  # the same config resumes
    tiny_config.search.concurrency = 1
    preflight(tiny_config, options)  # so does a different concurrency
    tiny_config.train.lr = 0.5
    with pytest.raises(ConfigError, match=r"--resume: search 's1' was started with another config \(train.lr"):
        preflight(tiny_config, options)
