"""Load and save Llama-family checkpoints: a local folder with config.json and *.safetensors.

Sharded folders (model.safetensors.index.json) load too. Pickle formats are never opened. Every
problem with the files (invalid JSON, a missing shard, a truncated or garbage safetensors file, tensors
that do not match the config) is one CheckpointError naming the file and, for tensors, all of them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tessera.runtime.config import ModelConfig
from tessera.runtime.errors import CheckpointError
from tessera.runtime.model import Transformer

INDEX_FILE = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# buffers some old HF checkpoints carry; recomputed by the model, so safely ignored
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def safetensors_files(folder: Path) -> list[Path]:
    """The weight files of a checkpoint folder: the shards named by the index, or *.safetensors."""
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a folder: point at a checkpoint folder (config.json + *.safetensors)")
    index = folder / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            names = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{index} is not a valid safetensors index ({type(err).__name__}: {err}); it "
                                  "needs a 'weight_map' of tensor name -> shard file") from None
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            raise CheckpointError(f"{index} names shard(s) {', '.join(missing)} that are not in {folder}; "
                                  "copy the missing shard files next to the index")
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{folder} holds only pickle weights {pickles}; Tessera never unpickles checkpoints. "
            "Convert them to safetensors first (e.g. transformers' save_pretrained(..., "
            "safe_serialization=True) or safetensors.torch.save_file)."
        )
    raise CheckpointError(f"no *.safetensors weights in {folder}: a checkpoint folder needs its weights")


def expected_shapes(model: Transformer) -> dict[str, tuple[int, ...]]:
    shapes = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        shapes.pop("lm_head.weight")  # tied: the checkpoint may omit it
    return shapes


def check_tensor_shapes(found: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]],
                        optional: set[str] = frozenset(), source: str = "the checkpoint") -> None:
    """Raise one CheckpointError naming every missing, unexpected or mis-shaped tensor."""
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
        raise CheckpointError(f"{source} does not match its config.json:\n  " + "\n  ".join(problems))


def load_checkpoint(folder: str | Path, device: torch.device | str = "cpu",
                    dtype: torch.dtype | None = None) -> Transformer:
    """Build the model from config.json and load its safetensors.

    dtype: the argument, else config.json's torch_dtype/dtype, else the stored tensors' (transformers 5's
    dtype="auto").
    """
    folder = Path(folder)
    config = ModelConfig.from_json(folder / "config.json")
    files = safetensors_files(folder)
    found, stored_dtype = _tensor_index(files)
    dtype = dtype or (DTYPES[config.torch_dtype] if config.torch_dtype else stored_dtype)
    with torch.device("meta"):
        model = Transformer(config)  # no memory until the real tensors are assigned
    check_tensor_shapes(found, expected_shapes(model), optional={"lm_head.weight"}, source=str(folder))
    state = {}
    for path in files:
        with _open(path, device) as f:
            for name in f.keys():
                if name.endswith(IGNORED_SUFFIXES) or (name == "lm_head.weight" and config.tie_word_embeddings):
                    continue
                try:
                    state[name] = f.get_tensor(name).to(dtype)
                except (SafetensorError, RuntimeError, OSError) as err:
                    raise CheckpointError(f"{path}: tensor {name} cannot be read ({err}); the file is damaged, "
                                          "download or convert it again") from None
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


def _open(path: Path, device: torch.device | str = "cpu"):
    try:
        return safe_open(str(path), framework="pt", device=str(device))
    except (SafetensorError, OSError, RuntimeError) as err:
        raise CheckpointError(f"{path} is not a readable safetensors file ({err}); it is truncated or not "
                              "safetensors: download or convert it again") from None


def _tensor_index(files: list[Path]) -> tuple[dict[str, tuple[int, ...]], torch.dtype]:
    """Shapes of every stored tensor, and the dtype of the floating-point ones (the first file's)."""
    shapes, dtype = {}, None
    for path in files:
        with _open(path) as f:
            for name in f.keys():
                if name in shapes:
                    raise CheckpointError(f"tensor {name} is stored twice (again in {path}); keep one copy")
                piece = f.get_slice(name)
                shapes[name] = tuple(piece.get_shape())
                if dtype is None and piece.get_dtype() in ("F32", "BF16", "F16"):
                    dtype = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}[piece.get_dtype()]
    if not shapes:
        raise CheckpointError(f"{files[0].parent} has safetensors files but no tensors in them")
    return shapes, dtype or torch.float32
