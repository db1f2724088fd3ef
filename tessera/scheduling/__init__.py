"""Batch schedulers: pick each engine iteration's batch from a worker's waiting and running requests."""
from tessera.scheduling.config import SchedulerConfig
from tessera.scheduling.fcfs import FCFSScheduler

__all__ = ["SchedulerConfig", "FCFSScheduler"]
