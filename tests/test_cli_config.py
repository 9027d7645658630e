"""The command line as a user meets it: configs parse, --help documents options, mistakes give one clear line."""

import pytest
from conftest import ROOT, cli, subprocess_env


@pytest.mark.parametrize("config", ["configs/countdown.yaml", "configs/paper/countdown_qwen3_0.6b.yaml"])
def test_configs_parse_and_print_the_resolved_config(config):
    result = cli("fit", "--config", config, "--print_config")
    assert result.returncode == 0, result.stderr
    assert "group_size: 8" in result.stdout and "class_path: tasks.CountdownTask" in result.stdout


def test_paper_config_holds_the_papers_settings():
    result = cli("fit", "--config", "configs/paper/countdown_qwen3_0.6b.yaml", "--print_config")
    for line in (
        "name: Qwen/Qwen3-0.6B",
        "prompts_per_step: 256",
        "max_steps: 100",
        "lr: 1.0e-06",
        "clip_high: 0.28",
        "dual_clip: 10.0",
        "entropy_coef: 0.001",
        "samples_per_problem: 16",
    ):
        assert line in result.stdout, line


def test_help_documents_every_option_in_one_line():
    result = cli("fit", "--help")
    assert result.returncode == 0
    for doc in (
        "Completions sampled per prompt (K).",
        "prompts selected per training step (M)",
        "Tokens per chunk of the output-head",
    ):
        assert doc in " ".join(result.stdout.split()), doc
    # settings that may be null (LoRA, warm-start) have their own help page
    assert "Rank of the low-rank update." in " ".join(cli("fit", "--model.policy.lora.help").stdout.split())
    assert "Wall-clock bound" in " ".join(cli("fit", "--model.warm_start.help").stdout.split())


def test_switching_the_sampler_is_one_flag():
    result = cli("fit", "--config", "configs/countdown.yaml", "--data.sampler=UniformSampler", "--print_config")
    assert result.returncode == 0 and "class_path: samplers.UniformSampler" in result.stdout


def test_unknown_sampler_name_is_one_clear_error():
    result = cli("fit", "--config", "configs/countdown.yaml", "--data.sampler", "nope", "--trainer.max_steps", "1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Unknown sampler 'nope'. Registered samplers: "
        "dynamic_sampling, expected_difficulty, insight, inverse_evidence, mopps, uniform."
    )
    assert "Traceback" not in result.stderr


def test_missing_model_offline_is_one_clear_error():
    result = cli(
        "fit",
        "--config",
        "configs/countdown.yaml",
        "--model.policy.name",
        "nobody/absent-model",
        "--trainer.max_steps",
        "1",
        env_extra={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: Model 'nobody/absent-model' is not a local folder" in result.stderr


def test_wrong_config_type_is_rejected_by_the_parser():
    result = cli("fit", "--config", "configs/countdown.yaml", "--model.grpo.group_size", "abc")
    assert result.returncode != 0 and 'Parser key "model.grpo.group_size"' in result.stderr


def test_the_readme_sampler_example_works_from_the_command_line(tiny_fit_args, tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python\n# my_samplers.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_samplers.py").write_text(code)
    args = tiny_fit_args(
        2,
        "--data.sampler=my_samplers.HardestFirst",
        "--data.sampler.floor=0.1",
        "--trainer.num_sanity_val_steps=0",
        "--model.validation.at_end=false",
        "--print_config",
    )
    result = cli(*args, env_extra={"PYTHONPATH": f"{tmp_path}:{subprocess_env()['PYTHONPATH']}"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: my_samplers.HardestFirst" in result.stdout and "floor: 0.1" in result.stdout
    args.remove("--print_config")
    result = cli(*args, env_extra={"PYTHONPATH": f"{tmp_path}:{subprocess_env()['PYTHONPATH']}"})
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_readme_task_example_registers_and_scores(tmp_path, monkeypatch):
    import importlib

    import tasks

    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python\nfrom tasks import Score, Task, register_task\n", 1)[1].split("```", 1)[0]
    (tmp_path / "parity_task.py").write_text("from tasks import Score, Task, register_task\n" + code)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("parity_task")
        task = tasks.build_task("parity", train_size=10, test_size=4)
        example = task.examples("test")[0]
        assert task.score(task.solution(example), example).correct
        assert not task.score("maybe", example).correct and task.eval_splits == ("test",)
    finally:
        tasks.TASKS.pop("parity", None)


def test_short_sampler_names_take_options_on_the_command_line(tmp_path):
    from insight_lightning.sampler_names import expand_sampler_names

    mopps, insight = "--data.sampler=samplers.mopps.MoPPSSampler", "--data.sampler=samplers.insight.InSightSampler"
    # a flag's short name is replaced only when options follow; the options themselves are kept as given
    assert expand_sampler_names(["fit", "--data.sampler", "mopps", "--data.sampler.target", "0.4"]) == [
        "fit",
        mopps,
        "--data.sampler.target",
        "0.4",
    ]
    assert expand_sampler_names(["fit", "--data.sampler=mopps"]) == ["fit", "--data.sampler=mopps"]
    assert expand_sampler_names(["--data.sampler=mopps", "--data.sampler=uniform"]) == [
        "--data.sampler=mopps",
        "--data.sampler=uniform",
    ]
    # a name set by a config file gets its class inserted before the first option; a class given in full is kept
    named = tmp_path / "named.yaml"
    named.write_text("data:\n  sampler: insight\n")
    full = tmp_path / "full.yaml"
    full.write_text("data:\n  sampler:\n    class_path: samplers.MoPPSSampler\n")
    assert expand_sampler_names(["-c", str(named), "--data.sampler.eta=2"]) == [
        "-c",
        str(named),
        insight,
        "--data.sampler.eta=2",
    ]
    assert expand_sampler_names(["-c", str(named), "-c", str(full), "--data.sampler.target=0.4"]) == [
        "-c",
        str(named),
        "-c",
        str(full),
        "--data.sampler.target=0.4",
    ]
    unknown = ["--data.sampler=nope", "--data.sampler.x=1"]
    assert expand_sampler_names(unknown) == unknown  # left for the parser's own error

    result = cli(
        "fit",
        "--config",
        "configs/countdown.yaml",
        "--data.sampler=mopps",
        "--data.sampler.target=0.4",
        "--print_config",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: samplers.mopps.MoPPSSampler" in result.stdout and "target: 0.4" in result.stdout
    result = cli("fit", "--config", "configs/countdown.yaml", "--data.sampler.eta=2", "--print_config")
    assert result.returncode == 0 and "eta: 2.0" in result.stdout
