"""Online prompt selection for RLVR: Beta beliefs per prompt, a sampler registry, InSight and its baselines.

Framework-free: a sampler is tensors in, prompt ids out. Nothing here imports Lightning or insight_lightning.
"""

from samplers.base import Choice, Sampler, mixed_groups
from samplers.difficulty import ExpectedDifficultySampler, InverseEvidenceSampler
from samplers.dynamic_sampling import DynamicSamplingSampler
from samplers.greso import GRESOSampler
from samplers.informative import InformativeGroupSampler, mixed_group_probability
from samplers.insight import InSightSampler, mutual_information, wmi_score
from samplers.mopps import MoPPSSampler
from samplers.posterior import BetaPosterior
from samplers.registry import SAMPLERS, build_sampler, register_sampler
from samplers.selection import REFRESH_MODES, Outcomes, PromptSelector, Refresh, SelectionRecord
from samplers.speed_rl import SpeedRLSampler
from samplers.stream import CandidateStream
from samplers.uniform import UniformSampler

__all__ = [
    "SAMPLERS",
    "BetaPosterior",
    "CandidateStream",
    "DynamicSamplingSampler",
    "GRESOSampler",
    "ExpectedDifficultySampler",
    "InSightSampler",
    "InformativeGroupSampler",
    "InverseEvidenceSampler",
    "MoPPSSampler",
    "SpeedRLSampler",
    "mixed_group_probability",
    "mixed_groups",
    "mutual_information",
    "Choice",
    "Outcomes",
    "REFRESH_MODES",
    "Refresh",
    "wmi_score",
    "PromptSelector",
    "Sampler",
    "SelectionRecord",
    "UniformSampler",
    "build_sampler",
    "register_sampler",
]
