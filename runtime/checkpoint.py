"""Load and save Llama-format checkpoints: a local folder with config.json and *.safetensors.

Sharded folders (model.safetensors.index.json) load too. Pickle formats are never opened, and a
checkpoint whose tensors do not match the config is refused with one ValueError listing them all.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tessera.runtime.config import ModelConfig
from tessera.runtime.model import Transformer

INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# buffers some old HF checkpoints carry; recomputed by the model, so safely ignored
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def safetensors_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder: the shards named by the index, or *.safetensors."""
    if (folder / INDEX_FILE).exists():
        weight_map = json.loads((folder / INDEX_FILE).read_text())["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{folder} holds only pickle weights {pickles}; Tessera never unpickles checkpoints. "
            "Convert them to safetensors first (e.g. transformers' save_pretrained(..., "
            "safe_serialization=True) or safetensors.torch.save_file)."
        )
    raise FileNotFoundError(f"no *.safetensors weights in {folder}")


def expected_shapes(model: Transformer) -> dict[str, tuple[int, ...]]:
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        shapes.pop("lm_head.weight")  # tied: the checkpoint may omit it
    return shapes


def check_tensor_shapes(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]],
                        optional: set[str] = frozenset()) -> None:
    """Raise one ValueError naming every missing, unexpected or mis-shaped tensor."""
    problems = []
    for name, shape in expected.items():
        if name not in found:
            problems.append(f"missing tensor {name} (expected shape {list(shape)})")
        elif tuple(found[name]) != shape:
            problems.append(f"tensor {name} has shape {list(found[name])}, expected shape {list(shape)}")
    for name in found:
        if name not in expected and name not in optional and not name.endswith(IGNORED_SUFFIXES):
            problems.append(f"unexpected tensor {name} (shape {list(found[name])})")
    if problems:
        raise ValueError("checkpoint does not match its config.json:\n  " + "\n  ".join(problems))


def load_checkpoint(folder: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype | None = None) -> Transformer:
    """Build the model from config.json and load its safetensors; dtype defaults to the config's."""
    folder = Path(folder)
    config = ModelConfig.from_json(folder / "config.json")
    dtype = dtype or DTYPES[config.torch_dtype]
    with torch.device("meta"):
        model = Transformer(config)  # no memory until the real tensors are assigned
    files = safetensors_files(folder)
    found = _tensor_shapes(files)
    check_tensor_shapes(found, expected_shapes(model), optional={"lm_head.weight"})
    state = {}
    for path in files:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            for name in f.keys():
                if name.endswith(IGNORED_SUFFIXES) or (name == "lm_head.weight" and config.tie_word_embeddings):
                    continue
                state[name] = f.get_tensor(name).to(dtype)
    model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval()


def save_checkpoint(model: Transformer, folder: str | Path) -> None:
    """Write HF-compatible config.json and model.safetensors (tied lm_head omitted, as HF does)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")
    dtype_name = {v: k for k, v in DTYPES.items()}[next(iter(state.values())).dtype]
    config = ModelConfig.from_hf_dict({**model.config.to_hf_dict(), "torch_dtype": dtype_name})
    config.to_json(folder / "config.json")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _tensor_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes
