"""Several processes, launched as users launch them, each through `python -m insight_lightning` in a subprocess:
DDP and FSDP2 on 2 gloo ranks of one node (Lightning starts the second rank), and 2 nodes x 1 process on 127.0.0.1
started by torchrun (static rendezvous, --node_rank) or with the variables srun sets (Lightning's SLURMEnvironment).

Every rank must select the same prompts and hold the same beliefs and weights; two nodes must learn exactly what one
node with two ranks learns; a run stopped by a signal to one node's launcher must continue exactly on both nodes."""

import re

import pytest
import torch
from conftest import cli, fit_args_in, launch_nodes
from signal_sender import sender_args
from test_cli_fit import FSDP2, SIGNAL, probe_args

COMMON = [*SIGNAL, "--trainer.accelerator=cpu", "--model.grpo.micro_batch_size=4", "--model.grpo.kl_coef=0.01"]
ONE_NODE = ["--trainer.strategy=ddp", "--trainer.devices=2"]
TWO_NODES = ["--trainer.strategy=ddp", "--trainer.devices=1", "--trainer.num_nodes=2"]
STEPS = 3


def ok(results) -> None:
    for result in results if isinstance(results, list) else [results]:
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
    ok(launch_nodes(*args("nodes", *TWO_NODES), launcher="torchrun", out_dir=root))
    # SIGTERM to node 1's torchrun agent during step 1's update, as a scheduler signals the launcher: the agent passes
    # it on to its worker, both nodes stop after the same step and the run continues on both nodes, started by srun
    stopped = launch_nodes(
        *args("resumed", *TWO_NODES, *sender_args("update", 1, rank=1, to_launcher=True), probe=False),
        launcher="torchrun",
        out_dir=root,
    )
    ok(launch_nodes(*args("resumed", *TWO_NODES, "--ckpt_path=last"), launcher="srun", out_dir=root))
    probes = {
        name: [torch.load(root / name / f"rank{rank}.pt") for rank in (0, 1)]
        for name in ("ddp", "fsdp2", "fsdp2_resumed", "nodes", "resumed")
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


@pytest.mark.parametrize("name", ["ddp", "fsdp2", "nodes"])
def test_every_rank_selects_the_same_prompts_and_holds_the_same_beliefs_and_weights(runs, name):
    rank0, rank1 = runs["probes"][name]
    assert rank0["sharded"] == (name == "fsdp2")
    assert len(rank0["selections"]) == STEPS and rank0["global_step"] == STEPS
    assert_same_training(rank1, rank0)
    # both ranks' outcomes reached the beliefs: M=8 prompts (4 per rank) x K=4 per step
    assert (rank0["alpha"] + rank0["beta"]).sum().item() == 64 * 2 + STEPS * 8 * 4
    assert any(w.abs().sum() > 0 for n, w in rank0["weights"].items() if "lora_B" in n)  # the weights did move


def test_two_nodes_learn_exactly_what_one_node_with_two_ranks_learns(runs):
    one_node = runs["probes"]["ddp"][0]
    for rank in runs["probes"]["nodes"]:
        assert_same_training(rank, one_node)


def test_fsdp2_learns_what_ddp_learns_and_resumes_exactly(runs):
    ddp, (fsdp2, _), resumed = runs["probes"]["ddp"][0], runs["probes"]["fsdp2"], runs["probes"]["fsdp2_resumed"]
    assert_same_training(fsdp2, ddp, exact=False)
    for rank, full in zip(resumed, runs["probes"]["fsdp2"]):
        assert rank["selections"] == full["selections"][2:]
        assert_same_training(rank, full)


def test_a_signal_to_one_nodes_launcher_stops_both_nodes_at_one_step_and_srun_continues_them_exactly(runs):
    node0, node1 = runs["stopped"]
    saved = re.search(r"SIGTERM received: checkpoint after step (\d) saved to (\S+); stopping\.", node0.stderr)
    assert saved, node0.stderr[-4000:]
    # both workers acted at the same step (the signal reached node 1 only); torchrun reports the worker's exit code
    assert saved.group(0) in node1.stderr and saved.group(2) == str(runs["root"] / "resumed" / "last.ckpt")
    assert "Received 15 death signal, shutting down workers" in node1.stderr
    assert node0.returncode != 0 and "exitcode  : 143" in node0.stderr
    step = int(saved.group(1))
    assert 1 <= step < STEPS
    one_node = runs["probes"]["ddp"][0]
    for rank in runs["probes"]["resumed"]:  # resumed after `step` on two nodes: as if never stopped
        assert rank["selections"] == one_node["selections"][step:]
        assert_same_training(rank, one_node)
