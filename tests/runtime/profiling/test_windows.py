"""Held-out windows in a checkpoint's own tokens: the byte model's bytes (as before), a BPE checkpoint's
tokenizer ids with its BOS convention."""
from pathlib import Path

import numpy as np
import pytest

from tessera.paths import REPO_ROOT
from tessera.runtime.profiling.windows import HeldoutTokens, heldout_tokens, special_prefix
from tessera.runtime.tokenizer import ByteTokenizer, load_tokenizer
from tessera.runtime.train.corpus import DEFAULT_STDLIB, load_split

from tests.runtime.profiling.tiny_bpe import save_tiny_bpe_checkpoint

needs_stdlib = pytest.mark.skipif(not Path(DEFAULT_STDLIB).exists(), reason="no held-out stdlib text here")


@pytest.mark.parametrize("with_bos", [False, True])
def test_special_prefix_follows_the_tokenizer(tmp_path, with_bos):
    save_tiny_bpe_checkpoint(tmp_path, with_bos=with_bos)
    assert special_prefix(load_tokenizer(tmp_path)) == ([1] if with_bos else [])
    assert special_prefix(ByteTokenizer()) == [256]


def test_windows_are_prefix_plus_a_run_of_the_split():
    held = HeldoutTokens(np.arange(100, 200), [7], None)
    rng = np.random.default_rng(0)
    win = held.window(rng, 10)
    assert len(win) == 10 and win[0] == 7 and np.all(np.diff(win[1:]) == 1)


@needs_stdlib
def test_byte_checkpoints_read_the_split_bytes_as_the_byte_profile_did():
    held = heldout_tokens(REPO_ROOT / "models" / "tessera-tiny-byte")
    data = load_split("heldout").data
    assert held.prefix == [256] and np.array_equal(held.ids, data)
    rng_old, rng_new = np.random.default_rng(3), np.random.default_rng(3)
    start = int(rng_old.integers(0, len(data) - 99))
    assert held.window(rng_new, 100) == [256] + data[start:start + 99].tolist()  # the old sample_windows


@needs_stdlib
def test_bpe_checkpoints_read_the_same_text_through_their_tokenizer(tmp_path):
    save_tiny_bpe_checkpoint(tmp_path)
    held = heldout_tokens(tmp_path)
    tok = load_tokenizer(tmp_path)
    assert held.prefix == [] and held.ids.max() < tok.vocab_size
    assert tok.decode(held.ids[:400].tolist()) == load_split("heldout").data[:2000].tobytes().decode()[:len(
        tok.decode(held.ids[:400].tolist()))]
