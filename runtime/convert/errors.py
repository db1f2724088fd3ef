"""The one error type of GGUF conversion: a refusal that names the file, the field and the fix.

The CLI prints it as a single line and exits 2; library callers catch it as a ValueError.
"""
from __future__ import annotations


class ConversionError(ValueError):
    """Input that tessera-convert refuses (bad file, unsupported architecture, quant or tokenizer)."""
