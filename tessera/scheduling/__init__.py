"""Batch schedulers: pick each engine iteration's batch from a worker's waiting and running requests.

FCFSScheduler (vLLM v1) is shared with the runtime; families.py adds vLLM v0, Sarathi-Serve and Orca.
"""
from tessera.scheduling.config import SCHEDULER_FAMILIES, SchedulerConfig
from tessera.scheduling.fcfs import FCFSScheduler
from tessera.scheduling.families import FAMILIES, effective_config, make_scheduler

__all__ = ["SCHEDULER_FAMILIES", "FAMILIES", "SchedulerConfig", "FCFSScheduler", "effective_config", "make_scheduler"]
