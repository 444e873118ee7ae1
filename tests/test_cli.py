"""The command-line contract: bad input -> exit 2, one line on stderr, nothing written."""

import pytest

from raysynth.cli import main

from conftest import run_job


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
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, needle):
    home = tmp_path / "home"
    result = run_job(args, env={"RAYSYNTH_HOME": str(home)}, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in result.stderr
    assert not (home / "mlflow.db").exists() and not (home / "tune").exists()


def test_malformed_yaml_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  trials: [3\n")
    result = run_job(["--space", str(bad)], env={"RAYSYNTH_HOME": str(tmp_path / "home")}, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "malformed YAML" in result.stderr
    assert not (tmp_path / "home").exists()


def test_leaderboard_unknown_experiment(tmp_path, capsys):
    assert main(["leaderboard", "--experiment", "nope", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


def test_finetune_generator_bad_model_exits_2_before_starting_ray(capsys):
    assert main(["finetune-generator", "--model", "/nonexistent/sd"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pool.options.model" in err[0]
    import ray

    assert not ray.is_initialized()
