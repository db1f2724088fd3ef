"""Convert one GGUF file into a Hugging Face Llama folder that Tessera's load_checkpoint reads.

Writes config.json, *.safetensors (sharded past a size), tokenizer files and conversion.json, atomically.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from tqdm import tqdm

from tessera.runtime.convert.errors import ConversionError
from tessera.runtime.convert.gguf_file import open_gguf
from tessera.runtime.convert.gguf_tokenizer import build_tokenizer
from tessera.runtime.convert.hf_config import build_hf_config, check_architecture
from tessera.runtime.convert.shards import parse_size, plan_shards, write_index, write_shard
from tessera.runtime.convert.tensors import load_tensor, plan_tensors

CONVERTER_VERSION = 1  # bump whenever the output for the same GGUF changes
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RECORD_FILE = "conversion.json"
# what a conversion writes; --force replaces exactly these in an existing folder and keeps the rest
OUTPUT_PATTERNS = ("config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json",
                   "tokenizer_config.json", "generation_config.json", RECORD_FILE)


@dataclass
class ConversionResult:
    folder: Path
    source: Path
    sha256: str
    config: dict
    quant_types: dict[str, int]
    files: list[str] = field(default_factory=list)
    seconds: float = 0.0


def convert_gguf(gguf_path: str | Path, out: str | Path, dtype: str = "float32", max_shard_size: str | int = "2GB",
                 force: bool = False, progress: bool = True) -> ConversionResult:
    """Convert `gguf_path` into the HF folder `out`; ConversionError (a ValueError) on refused input."""
    start = time.perf_counter()
    source, out = Path(gguf_path), Path(out)
    if dtype not in DTYPES:
        raise ConversionError(f"dtype {dtype!r} is not supported; choose one of {list(DTYPES)}")
    max_bytes = parse_size(max_shard_size)
    _check_output_folder(out, force)
    file = open_gguf(source)
    check_architecture(file)
    shapes = {t.name: tuple(int(d) for d in reversed(t.shape.tolist())) for t in file.reader.tensors}
    config = build_hf_config(file, dtype, shapes)
    plans = plan_tensors(file.reader, config, source)
    tokenizer = build_tokenizer(file, config["max_position_embeddings"])  # refusals come before the slow part

    element = torch.tensor([], dtype=DTYPES[dtype]).element_size()
    sizes = {p.hf_name: element * _numel(p.shape) for p in plans}
    shards = plan_shards(sizes, max_bytes)
    by_name = {p.hf_name: p for p in plans}
    partial = out.parent / f".{out.name}.partial"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        with tqdm(total=len(plans), desc=f"converting {source.name}", unit="tensor", disable=not progress) as bar:
            for shard in shards:
                tensors = {}
                for name in shard.names:
                    tensors[name] = load_tensor(file.reader, by_name[name], DTYPES[dtype], source)
                    bar.update()
                write_shard(partial, shard, tensors)
                del tensors
        write_index(partial, shards)
        (partial / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        tokenizer.write(partial)
        sha = file_sha256(source)
        quant_types = dict(sorted(Counter(t.tensor_type.name for t in file.reader.tensors).items()))
        record = {
            "tool": "tessera-convert",
            "converter_version": CONVERTER_VERSION,
            "tessera_version": _tessera_version(),
            "source": {"file": source.name, "sha256": sha, "size_bytes": source.stat().st_size},
            "gguf": {
                "name": file.get("general.name"),
                "license": file.get("general.license"),
                "architecture": file.architecture,
                "file_type": file.get("general.file_type"),
                "quant_types": quant_types,
                # embedding/output types and any matrix whose type differs from the bulk of them
                "tensor_types": _notable_types(file.reader.tensors),
                "tokenizer_model": file.get("tokenizer.ggml.model"),
                "tokenizer_pre": file.get("tokenizer.ggml.pre"),
            },
            "dtype": dtype,
            "max_shard_size": max_bytes,
            "files": sorted(p.name for p in partial.iterdir()) + [RECORD_FILE],
        }
        (partial / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")  # written last: marks completion
        _publish(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return ConversionResult(out, source, sha, config, quant_types, record["files"], time.perf_counter() - start)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_output_folder(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConversionError(f"--out {out} is a file; pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConversionError(f"--out {out} exists and is not empty; pass --force to replace its converted files")


def _publish(partial: Path, out: Path) -> None:
    """Move the finished files into `out`, replacing a previous conversion's files but nothing else."""
    if not out.exists():
        partial.rename(out)
        return
    for pattern in OUTPUT_PATTERNS:
        for old in out.glob(pattern):
            old.unlink()
    for new in partial.iterdir():
        new.rename(out / new.name)
    partial.rmdir()


def _notable_types(tensors) -> dict[str, str]:
    counts = Counter(t.tensor_type.name for t in tensors if len(t.shape) > 1)
    bulk = counts.most_common(1)[0][0] if counts else None
    return {t.name: t.tensor_type.name for t in tensors
            if t.name in ("token_embd.weight", "output.weight") or (len(t.shape) > 1 and t.tensor_type.name != bulk)}


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _tessera_version() -> str:
    try:
        return version("tessera")
    except PackageNotFoundError:
        return "unknown"
