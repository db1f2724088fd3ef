"""Profiling the runtime's model: per-head top-K page traces and head stability (head_stability.py).

record.py teacher-forces a text through the model and records, per decode step, each (layer, KV head)'s
top-K pages by real attention mass and by Quest's MinMax bound, in tessera/kvcache/traces.py's format.
"""
