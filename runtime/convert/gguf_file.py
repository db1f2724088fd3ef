"""Open a GGUF file and read its metadata as plain Python values (str, int, float, bool, lists).

Every way a file can fail to open (missing, not a GGUF, truncated, corrupt) becomes one ConversionError.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from tessera.runtime.convert.errors import ConversionError

GGUF_MAGIC = b"GGUF"
_MISSING = object()


@dataclass
class GGUFFile:
    """A parsed GGUF: its path, gguf's reader (tensors are memory-mapped) and decoded metadata."""

    path: Path
    reader: gguf.GGUFReader
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def architecture(self) -> str:
        return self.require("general.architecture")

    @property
    def tensor_names(self) -> list[str]:
        return [t.name for t in self.reader.tensors]

    def has(self, key: str) -> bool:
        return key in self.reader.fields

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self.reader.fields:
            return default
        if key not in self._cache:
            try:
                self._cache[key] = self.reader.fields[key].contents()
            except UnicodeDecodeError as e:
                raise ConversionError(f"{self.path}: metadata key {key!r} is not valid UTF-8 ({e}); the file is corrupt") from e
        return self._cache[key]

    def require(self, key: str) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise ConversionError(
                f"{self.path}: metadata key {key!r} is missing; the GGUF is incomplete (re-export it "
                "with llama.cpp's convert_hf_to_gguf.py)"
            )
        return value

    def keys(self) -> list[str]:
        return list(self.reader.fields)


def open_gguf(path: str | Path) -> GGUFFile:
    """Parse `path`, refusing a missing file, a non-GGUF, a truncated or corrupt one, or a split one."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file; pass the path of a .gguf model file")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != GGUF_MAGIC:
        raise ConversionError(
            f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r}); "
            "tessera-convert reads llama.cpp GGUF model files"
        )
    try:
        reader = gguf.GGUFReader(path)
        _check_tensor_data_in_file(reader, path)
    except ConversionError:
        raise
    except Exception as e:  # gguf's parser fails on damaged input in many ways (ValueError, IndexError, ...)
        raise ConversionError(
            f"{path}: cannot parse the GGUF ({type(e).__name__}: {e}); the file is truncated or corrupt, "
            "download or export it again"
        ) from e
    file = GGUFFile(path, reader)
    splits = file.get("split.count", 1)
    if splits and splits > 1:
        raise ConversionError(
            f"{path}: part of a {splits}-file split GGUF; merge the parts first "
            "(llama.cpp: llama-gguf-split --merge FIRST.gguf MERGED.gguf)"
        )
    return file


def _check_tensor_data_in_file(reader: gguf.GGUFReader, path: Path) -> None:
    size = path.stat().st_size
    for tensor in reader.tensors:
        end = tensor.data_offset + tensor.n_bytes
        if end > size:
            raise ConversionError(
                f"{path}: truncated: tensor {tensor.name} needs bytes up to {end} but the file has {size}; "
                "download or export it again"
            )

