"""Several processes, launched as users launch them, each through `python -m insight_lightning` in a subprocess:
DDP and FSDP2 on 2 gloo ranks of one node (Lightning starts the second rank), and 2 nodes x 1 process on 127.0.0.1
started by torchrun (static rendezvous, --node_rank) or with the variables srun sets (Lightning's SLURMEnvironment).

Every rank must select the same prompts and hold the same beliefs and weights; two nodes must learn exactly what one
node with two ranks learns; a run stopped by a signal to one node's launcher must continue exactly on both nodes."""

import functools
import re
import shlex

import pytest
import torch
import torch.distributed.run
import yaml
from conftest import ROOT, cli, cli_in_process, fit_args_in, launch_nodes, srun_env
from signal_sender import sender_args
from test_cli_fit import FSDP2, SIGNAL, probe_args

COMMON = [*SIGNAL, "--trainer.accelerator=cpu", "--model.grpo.micro_batch_size=4", "--model.grpo.kl_coef=0.01"]
ONE_NODE = ["--trainer.strategy=ddp", "--trainer.devices=2"]
TWO_NODES = ["--trainer.strategy=ddp", "--trainer.devices=1", "--trainer.num_nodes=2"]
STEPS = 3


def ok(*results) -> None:
    for result in results:
        assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, warmstart_cache) -> dict:
    """Each run's probe per rank (selections, alpha/beta, trainable weights), and the stopped run's node outputs."""
    root = tmp_path_factory.mktemp("distributed")
    fit_args = fit_args_in(root, warmstart_cache)

    def args(name: str, *extra: str, probe: bool = True) -> list[str]:
        # each run checkpoints into its own folder (set before the probe callback is appended)
        return fit_args(STEPS, f"--trainer.callbacks.init_args.dirpath={root / name}", *COMMON, *extra) + (
            probe_args(root / name) if probe else []
        )

    ok(cli(*args("ddp", *ONE_NODE)))
    ok(cli(*args("fsdp2", *FSDP2, "--trainer.devices=2")))
    ok(cli(*args("fsdp2_resumed", *FSDP2, "--trainer.devices=2", f"--ckpt_path={root / 'fsdp2'}/epoch=0-step=2.ckpt")))
    # Two nodes are launched once, as they are on a cluster: started by torchrun and, after a stop, continued by srun.
    # What they learn over the whole run must equal what one node with two ranks learns (no separate full two-node
    # run: a difference in either the two-node math or the continue fails the same comparison).
    # SIGUSR1 to node 1's torchrun agent during step 1's update, as a scheduler signals the launcher before a time
    # limit: the agent passes it on to its worker, both nodes stop after the same step, and the run continues on both
    # nodes, started by srun
    signal = sender_args("update", 1, "SIGUSR1", rank=1, to_launcher=True)
    stopped = launch_nodes(
        *args("resumed", *TWO_NODES, *signal, probe=False),
        launcher="torchrun",
        out_dir=root / "logs" / "stopped",
    )
    resumed = args("resumed", *TWO_NODES, "--ckpt_path=last")
    ok(*launch_nodes(*resumed, launcher="srun", out_dir=root / "logs" / "resumed"))
    probes = {
        name: [torch.load(root / name / f"rank{rank}.pt") for rank in (0, 1)]
        for name in ("ddp", "fsdp2", "fsdp2_resumed", "resumed")
    }
    return {"probes": probes, "stopped": stopped, "root": root}


def assert_same_training(run: dict, reference: dict, exact: bool = True) -> None:
    assert run["selections"] == reference["selections"][-len(run["selections"]) :]
    assert torch.equal(run["alpha"], reference["alpha"]) and torch.equal(run["beta"], reference["beta"])
    assert run["weights"].keys() == reference["weights"].keys()
    for name, weight in reference["weights"].items():
        if exact:
            assert torch.equal(run["weights"][name], weight), name
        else:  # sharded: the same math, reduced in another order
            torch.testing.assert_close(run["weights"][name], weight, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["ddp", "fsdp2"])
def test_every_rank_selects_the_same_prompts_and_holds_the_same_beliefs_and_weights(runs, name):
    rank0, rank1 = runs["probes"][name]
    assert rank0["sharded"] == (name == "fsdp2")
    assert len(rank0["selections"]) == STEPS and rank0["global_step"] == STEPS
    assert_same_training(rank1, rank0)
    # both ranks' outcomes reached the beliefs: M=8 prompts (4 per rank) x K=4 per step
    assert (rank0["alpha"] + rank0["beta"]).sum().item() == 64 * 2 + STEPS * 8 * 4
    assert any(w.abs().sum() > 0 for n, w in rank0["weights"].items() if "lora_B" in n)  # the weights did move


def test_fsdp2_learns_what_ddp_learns_and_resumes_exactly(runs):
    ddp, (fsdp2, _), resumed = runs["probes"]["ddp"][0], runs["probes"]["fsdp2"], runs["probes"]["fsdp2_resumed"]
    assert_same_training(fsdp2, ddp, exact=False)
    for rank, full in zip(resumed, runs["probes"]["fsdp2"]):
        assert rank["selections"] == full["selections"][2:]
        assert_same_training(rank, full)


def test_sigusr1_to_one_nodes_launcher_stops_both_nodes_at_one_step_and_srun_continues_them_exactly(runs):
    node0, node1 = runs["stopped"]
    saved = re.search(r"SIGUSR1 received: checkpoint after step (\d) saved to (\S+); stopping\.", node0.stderr)
    assert saved, node0.stderr[-4000:]
    # both workers acted at the same step (the signal reached node 1 only); torchrun reports the worker's exit code
    assert saved.group(0) in node1.stderr and saved.group(2) == str(runs["root"] / "resumed" / "last.ckpt")
    # torchrun exits 1 on both: the signalled agent with its SignalException, the other reporting its worker's 138
    assert node1.returncode == 1 and "SignalException" in node1.stderr
    assert node0.returncode == 1 and "exitcode  : 138" in node0.stderr
    step = int(saved.group(1))
    assert 1 <= step < STEPS
    one_node = runs["probes"]["ddp"][0]
    for rank in runs["probes"]["resumed"]:  # resumed after `step` on two nodes: as if never stopped
        assert rank["selections"] == one_node["selections"][step:]
        assert_same_training(rank, one_node)


TORCHRUN_ONE_PROCESS = {
    "TORCHELASTIC_RUN_ID": "1",
    "WORLD_SIZE": "1",
    "RANK": "0",
    "LOCAL_RANK": "0",
    "GROUP_RANK": "0",
}


@pytest.mark.parametrize(
    ("launcher_env", "message"),
    [
        (TORCHRUN_ONE_PROCESS, "the product (1 * 2) does not match the world size (1)"),
        (srun_env(0, 1), "the number of nodes configured in SLURM `--nodes=1` does not match"),
    ],
    ids=["torchrun", "srun"],
)
def test_a_launch_with_another_number_of_nodes_is_refused_in_one_line(
    tiny_fit_args, monkeypatch, launcher_env, message
):
    for name, value in launcher_env.items():
        monkeypatch.setenv(name, value)
    result = cli_in_process(*tiny_fit_args(1, *TWO_NODES, "--trainer.accelerator=cpu"))
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if message in line]
    assert line.startswith("error: ") and "Traceback" not in result.stderr


def documented_cluster_blocks() -> list[list[str]]:
    """The bash blocks of "Run on a cluster" (docs/clusters.md): commands with continuation lines joined, comments
    dropped."""
    section = (ROOT / "docs" / "clusters.md").read_text().split("## Run on a cluster\n", 1)[1].split("\n## ", 1)[0]
    blocks = [block.split("```", 1)[0] for block in section.split("```bash\n")[1:]]
    lines = [[line.strip() for line in block.replace("\\\n", " ").splitlines()] for block in blocks]
    return [[line for line in block if line and not line.startswith("# ")] for block in lines]  # #SBATCH stays


def with_values(command: str) -> str:
    """A documented command with its shell variables given values."""
    values = {"$NODE_RANK": "0", "$MASTER_ADDR": "127.0.0.1", "$SLURM_JOB_ID": "4243", "VLLM_NODE": "127.0.0.1"}
    for name, value in values.items():
        command = command.replace(name, value)
    return command


def fit_options(command: str) -> list[str]:
    """The `fit ...` arguments of a documented command."""
    return shlex.split(with_values(command).split(" -m insight_lightning ", 1)[1])


def test_the_documented_cluster_commands_parse_as_written():
    """The launch itself runs above at reduced size; here the documented commands: every torchrun flag exists in
    this torch, and every option parses into the configuration it promises (SLURM's counts match the trainer's)."""
    (torchrun,), sbatch, (server, trainer) = documented_cluster_blocks()
    launcher = torch.distributed.run.parse_args(shlex.split(with_values(torchrun))[1:])
    assert (launcher.nnodes, launcher.nproc_per_node, launcher.module) == ("2", "4", True)
    assert "SIGUSR1" in launcher.signals_to_handle.split(",") and launcher.shutdown_timeout == 300
    fit = fit_options(torchrun)
    slurm = dict(line.split()[1].lstrip("-").partition("=")[::2] for line in sbatch if line.startswith("#SBATCH"))
    (srun,) = [line for line in sbatch if line.startswith("srun ")]
    vllm = [*fit, *shlex.split(with_values(trainer))]
    assert "--enable-lora" in server and "--logprobs-mode processed_logprobs" in server  # the vLLM stage's flags
    for options, expected in (
        (fit, {"trainer.num_nodes": "2", "trainer.devices": "4", "trainer.strategy": "ddp"}),
        (fit_options(srun), {"trainer.num_nodes": slurm["nodes"], "trainer.devices": slurm["ntasks-per-node"]}),
        (
            vllm,
            {
                "model.rollout.engine": "vllm_server",
                "model.rollout.vllm.server_url": "http://127.0.0.1:8000",
                "model.rollout.vllm.adapter_dir": "/shared/adapters",
            },
        ),
    ):
        result = cli_in_process(*options, "--print_config")
        assert result.returncode == 0, result.stderr[-2000:]
        config = yaml.safe_load(result.stdout)
        for key, value in expected.items():
            assert str(functools.reduce(dict.get, key.split("."), config)) == value, key
