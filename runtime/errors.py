"""The one error type for a checkpoint folder that cannot be loaded as it is.

Every message names the file (and the key or tensor) at fault and what to do about it.
"""
from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint file (config.json, safetensors, tokenizer files) that Tessera refuses to load."""
