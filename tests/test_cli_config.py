"""The command line as a user meets it: configs parse, --help documents options, mistakes give one clear line."""

import sys

import pytest
from conftest import ROOT, cli, cli_in_process


def test_the_printed_config_holds_the_task_and_group_size():
    result = cli_in_process("fit", "--config", "countdown.yaml", "--print_config")
    assert result.returncode == 0, result.stderr
    assert "group_size: 8" in result.stdout and "class_path: tasks.CountdownTask" in result.stdout


def test_each_class_docstrings_are_parsed_once_per_process(monkeypatch):
    # jsonargparse would parse them (source, ast) for each subcommand's parser, and again for every CLI built
    import insight_lightning.cli.app as app

    parsed = []
    parse = app._parse_docstrings
    monkeypatch.setattr(
        app, "_parse_docstrings", lambda component, style: parsed.append(component) or parse(component, style=style)
    )
    app._parsed_docstrings.cache_clear()
    first = cli_in_process("fit", "--config", "countdown.yaml", "--model.warm_start.help")
    assert first.returncode == 0 and "Safety cap on wall-clock time" in " ".join(first.stdout.split())
    once = len(parsed)
    assert once > 10 and len(set(parsed)) == once  # the classes of four subcommands, each parsed once
    again = cli_in_process("fit", "--config", "countdown.yaml", "--model.warm_start.help")
    assert again.stdout == first.stdout and len(parsed) == once


def test_paper_config_holds_the_papers_settings():
    result = cli_in_process("fit", "--config", "configs/paper/countdown_qwen3_0.6b.yaml", "--print_config")
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
    result = cli_in_process("fit", "--help")
    assert result.returncode == 0
    for doc in (
        "Completions sampled per prompt (K).",
        "prompts selected per training step (M)",
        "Tokens per chunk of the output head + log-softmax (null: about 64 MB",
    ):
        assert doc in " ".join(result.stdout.split()), doc
    # settings that may be null (LoRA, warm-start) have their own help page
    assert "Rank of the low-rank update." in " ".join(cli_in_process("fit", "--model.policy.lora.help").stdout.split())
    assert "Safety cap on wall-clock time" in " ".join(cli_in_process("fit", "--model.warm_start.help").stdout.split())


def test_switching_the_sampler_is_one_flag():
    result = cli_in_process(
        "fit", "--config", "configs/countdown.yaml", "--data.sampler=UniformSampler", "--print_config"
    )
    assert result.returncode == 0 and "class_path: samplers.UniformSampler" in result.stdout


def test_unknown_sampler_name_is_one_clear_error():
    result = cli_in_process(
        "fit", "--config", "configs/countdown.yaml", "--data.sampler", "nope", "--trainer.max_steps", "1"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: Unknown sampler 'nope'. Registered samplers: "
        "dynamic_sampling, expected_difficulty, greso, informative_group, insight, inverse_evidence, mopps, speed_rl, "
        "uniform."
    )
    assert "Traceback" not in result.stderr


def test_missing_model_offline_is_one_clear_error(tmp_path):
    result = cli(
        "fit",
        "--config",
        "configs/countdown.yaml",
        "--model.policy.name",
        "nobody/absent-model",
        "--trainer.max_steps",
        "1",
        f"--trainer.logger.init_args.save_dir={tmp_path}",  # the logger starts before the model loads
        env_extra={"HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: Model 'nobody/absent-model' is not a local folder" in result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (["--model.grpo.group_size", "abc"], "error: model.grpo.group_size: expected int, got 'abc'."),
        (
            ["--data.sampler=MoPPSSampler", "--data.sampler.target=abc"],
            "error: data.sampler.init_args.target: expected float, got 'abc'.",
        ),
    ],
)
def test_wrong_config_type_is_one_line_naming_the_option(override, message):
    result = cli_in_process("fit", "--config", "configs/countdown.yaml", *override)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [message]


def test_the_documented_sampler_example_works_from_the_command_line(tiny_fit_args, tmp_path, monkeypatch):
    import samplers

    page = (ROOT / "docs" / "selection.md").read_text()
    code = page.split("```python\n# my_samplers.py\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my_samplers.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    registered = dict(samplers.SAMPLERS)
    args = tiny_fit_args(
        2,
        "--data.sampler=my_samplers.HardestFirst",
        "--data.sampler.floor=0.1",
        "--trainer.num_sanity_val_steps=0",
        "--model.validation.at_end=false",
        "--print_config",
    )
    try:
        result = cli_in_process(*args)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "class_path: my_samplers.HardestFirst" in result.stdout and "floor: 0.1" in result.stdout
        args.remove("--print_config")
        result = cli_in_process(*args)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Seed set to 0" in result.stderr  # what the parse-error tests assert is absent, caught when it is there
        assert "hardest_first" in samplers.SAMPLERS  # the decorator registered it
    finally:
        samplers.SAMPLERS.clear()
        samplers.SAMPLERS.update(registered)
        sys.modules.pop("my_samplers", None)  # not monkeypatch.delitem: its undo would put the module back


def test_the_documented_task_example_registers_and_scores(tmp_path, monkeypatch):
    import importlib

    import tasks

    page = (ROOT / "docs" / "tasks.md").read_text()
    code = page.split("```python\nfrom tasks import Score, Task, register_task\n", 1)[1].split("```", 1)[0]
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


def test_sampler_options_follow_its_class_name_and_a_short_name_with_options_is_one_clear_error():
    result = cli_in_process(
        "fit",
        "--config",
        "countdown.yaml",
        "--data.sampler=MoPPSSampler",
        "--data.sampler.target=0.4",
        "--print_config",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "class_path: samplers.MoPPSSampler" in result.stdout and "target: 0.4" in result.stdout
    # the shipped config names the class, so an option alone changes the configured sampler
    result = cli_in_process("fit", "--config", "countdown.yaml", "--data.sampler.eta=2", "--print_config")
    assert (
        result.returncode == 0
        and "class_path: samplers.InSightSampler" in result.stdout
        and "eta: 2.0" in result.stdout
    )
    result = cli_in_process("fit", "--config", "countdown.yaml", "--data.sampler=mopps", "--data.sampler.target=0.4")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "usage:" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: data.sampler: the short name 'mopps' takes no options; name the sampler's class to set them, "
        "e.g. --data.sampler=MoPPSSampler --data.sampler.<option>=..."
    )


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("--model.rollout.cache=statc", "error: model.rollout.cache: 'statc' is not one of dynamic, static."),
        (
            "--model.optimizer.schedule=cosin",
            "error: model.optimizer.schedule: 'cosin' is not one of constant, linear, cosine.",
        ),
        (
            "--model.policy.dtype=bf16",
            "error: model.policy.dtype: 'bf16' is not one of auto, float32, bfloat16, float16.",
        ),
        (
            "--data.task.init_args.template=compakt",
            "error: data.task.init_args.template: 'compakt' is not one of tinyzero, chat, one_shot, few_shot,"
            " few_shot_short, compact.",
        ),
        ("--data.refresh=pass", "error: data.refresh: 'pass' is not one of step, epoch."),
    ],
)
def test_a_mistyped_choice_fails_at_parse_time_with_one_line_listing_the_choices(override, message):
    result = cli_in_process("fit", "--config", "countdown.yaml", override)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "usage:" not in result.stderr
    assert "Seed set" not in result.stderr + result.stdout  # nothing was instantiated, let alone warm-started
    assert result.stderr.strip().splitlines() == [message]


def test_a_mistyped_class_path_is_one_line():
    result = cli_in_process("fit", "--config", "countdown.yaml", "--data.task.class_path=tasks.CountdownTsk")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: data.task: Problem with given class_path 'tasks.CountdownTsk': module 'tasks' has no attribute "
        "'CountdownTsk'."
    ]


def test_help_names_the_program():
    result = cli("fit", "--help")  # a real `python -m`, whose argv[0] is __main__.py
    assert result.stdout.startswith("usage: python -m insight_lightning [options] fit")
    assert "__main__.py" not in result.stdout


def test_the_cli_overrides_only_public_lightning_methods():
    # a private method of LightningCLI can change or vanish in any Lightning release without notice
    from lightning.pytorch.cli import LightningCLI

    from insight_lightning.cli.app import InsightCLI

    private = [name for name in vars(InsightCLI) if name.startswith("_") and not name.startswith("__")]
    assert not [name for name in private if hasattr(LightningCLI, name)]
