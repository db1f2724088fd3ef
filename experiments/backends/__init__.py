"""Backends an experiment hands a workload to: they return the shared results tables."""
