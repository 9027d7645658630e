"""A model saved as a Hugging Face folder by every rank of a process group (the base a colocated vLLM engine loads,
a GGUF model's float copy): save_pretrained alone writes on rank 0 only."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import free_port
from safetensors.torch import load_file
from transformers import AutoConfig

from insight_lightning.policy.hf_folder import save_hf_folder
from insight_lightning.policy.loading import PolicyConfig, build_base_policy


def save_on_rank(rank: int, folder: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model, tokenizer = build_base_policy(PolicyConfig(name="tiny"))
        save_hf_folder(model, tokenizer, f"{folder}/rank{rank}")
        model.save_pretrained(f"{folder}/save_pretrained_rank{rank}")
    finally:
        dist.destroy_process_group()


def test_every_rank_writes_the_whole_folder_as_save_pretrained_does_on_rank_0(tmp_path):
    mp.spawn(save_on_rank, args=(str(tmp_path), free_port()), nprocs=2)
    reference = tmp_path / "save_pretrained_rank0"
    assert not (tmp_path / "save_pretrained_rank1" / "model.safetensors").exists()  # why this module exists
    expected = load_file(reference / "model.safetensors")
    for rank in (0, 1):
        folder = tmp_path / f"rank{rank}"
        weights = load_file(folder / "model.safetensors")
        assert weights.keys() == expected.keys() and all(torch.equal(weights[k], expected[k]) for k in expected)
        config, saved = (AutoConfig.from_pretrained(f).to_dict() for f in (folder, reference))
        config.pop("_name_or_path"), saved.pop("_name_or_path")  # the folders' own paths
        assert config == saved
        assert (folder / "tokenizer.json").is_file() and (folder / "generation_config.json").is_file()
