"""Profiling the runtime's model: per-head top-K page traces and head stability (head_stability.py), and
retrieval heads (retrieval.py: attention mass on a passkey needle while the model answers).

record.py teacher-forces a text through the model and records, per decode step, each (layer, KV head)'s
top-K pages by real attention mass and by Quest's MinMax bound, in tessera/kvcache/traces.py's format;
windows.py gives held-out text in the checkpoint's own tokens; heatmap.py draws layer x KV-head maps.
"""
