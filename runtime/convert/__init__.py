"""GGUF -> Hugging Face Llama folder conversion (`tessera-convert`) and the SmolLM2 model build.

Entry points: convert_gguf() here, the CLI in cli.py, ensure_smollm2() in smollm2.py.
"""
from __future__ import annotations

from tessera.runtime.convert.convert import ConversionResult, convert_gguf
from tessera.runtime.convert.errors import ConversionError

__all__ = ["ConversionError", "ConversionResult", "convert_gguf"]
