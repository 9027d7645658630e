"""Online prompt selection for RLVR: Beta beliefs per prompt, a sampler registry, InSight and its baselines.

Framework-free: a sampler is tensors in, prompt ids out. Nothing here imports Lightning or insight_lightning.
"""

from samplers.base import Sampler
from samplers.posterior import BetaPosterior
from samplers.registry import SAMPLERS, build_sampler, register_sampler
from samplers.selection import PromptSelector, SelectionRecord
from samplers.stream import CandidateStream
from samplers.uniform import UniformSampler

__all__ = [
    "SAMPLERS",
    "BetaPosterior",
    "CandidateStream",
    "PromptSelector",
    "Sampler",
    "SelectionRecord",
    "UniformSampler",
    "build_sampler",
    "register_sampler",
]
