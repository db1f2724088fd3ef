"""The scheduler families by name (`engine.scheduler`), and the engine limits each family actually runs with.

vllm_v1 is the shared FCFS scheduler (also the real runtime's); the others exist in the simulator only.
"""
from __future__ import annotations

from tessera.interface import BatchScheduler
from tessera.scheduling.config import SCHEDULER_FAMILIES, SchedulerConfig
from tessera.scheduling.fcfs import FCFSScheduler
from tessera.scheduling.orca import OrcaScheduler
from tessera.scheduling.sarathi import SarathiScheduler
from tessera.scheduling.vllm_v0 import VLLMV0Scheduler

FAMILIES = {"vllm_v1": FCFSScheduler, "vllm_v0": VLLMV0Scheduler, "sarathi": SarathiScheduler,
            "orca": OrcaScheduler}
assert tuple(FAMILIES) == SCHEDULER_FAMILIES
# Families whose prefills are never chunked (engine.chunked_prefill is a vllm_v1 setting).
CHUNKING = {"vllm_v1": None, "vllm_v0": False, "sarathi": True, "orca": False}


def make_scheduler(config: SchedulerConfig) -> BatchScheduler:
    """The scheduler of config.family; its .config is the effective one (chunking fixed by the family)."""
    return FAMILIES[config.family](config)


def effective_config(config: SchedulerConfig) -> SchedulerConfig:
    """The limits the family really applies (what summary.json should record)."""
    return make_scheduler(config).config
