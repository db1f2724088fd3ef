"""Retrieval mass: passkey examples keep exact needle / passkey / answer positions in a BPE's tokens, the
mass is exact on a planted model (zero queries: uniform attention), and KV heads aggregate their group."""
import json

import numpy as np
import pytest
import torch

from tessera.runtime.profiling.retrieval import (NeedleMass, build_example, char_span_tokens, head_retrieval_table,
                                                 main, needle_mass)
from tessera.runtime.profiling.windows import HeldoutTokens, special_prefix
from tessera.runtime.tokenizer import load_tokenizer

from tests.runtime.profiling.tiny_bpe import save_tiny_bpe_checkpoint

LINES = "".join(f"def f{i}(x):\n    return x + {i}  # line {i}\n" for i in range(200))


@pytest.fixture(scope="module")
def bpe(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bpe-ckpt")
    model = save_tiny_bpe_checkpoint(folder)
    tok = load_tokenizer(folder)
    held = HeldoutTokens(np.asarray(tok.encode(LINES, add_special_tokens=False)), special_prefix(tok), tok)
    return folder, model, tok, held


def test_example_positions_hold_the_needle_the_passkey_and_the_answer(bpe):
    _, _, tok, held = bpe
    ex = build_example(held, np.random.default_rng(0), 300, 0.5, "4813927")
    assert ex.answer_start <= 300
    text = lambda a, b: tok.decode(ex.tokens[a:b])  # noqa: E731
    assert text(*ex.needle) == "\nThe pass key is 4813927. Remember it."
    assert "4813927" in text(*ex.value) and ex.needle[0] <= ex.value[0] < ex.value[1] <= ex.needle[1]
    assert text(ex.answer_start, len(ex.tokens)) == " 4813927"
    assert text(0, ex.answer_start).endswith("\nWhat is the pass key? The pass key is")
    assert text(ex.needle[1], ex.needle[1] + 1).startswith("\n")  # a line of its own
    assert 0.3 < ex.needle[0] / ex.answer_start < 0.7


def test_char_spans_cover_merged_digits():
    pieces = ["is", " 48", "139", "27.", " Re"]  # a BPE that merged digits with their neighbours
    ids = list(range(len(pieces)))
    decode = lambda ids: "".join(pieces[i] for i in ids)  # noqa: E731
    assert char_span_tokens(ids, decode, start=3, length=7) == (1, 4)


def test_mass_is_exact_when_every_head_attends_uniformly(bpe):
    _, model, _, held = bpe
    planted = type(model)(model.config)
    planted.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer in planted.layers:
            layer.self_attn.q_proj.weight.zero_()  # scores 0: softmax is uniform over the S keys
    ex = build_example(held, np.random.default_rng(1), 200, 0.3, "1234567")
    mass = needle_mass(planted.eval(), ex, prefill_chunk=64)
    n = len(ex.tokens) - ex.answer_start
    steps = np.arange(n)
    expected_needle = (ex.needle[1] - ex.needle[0]) / (ex.answer_start + steps)  # S = keys seen at that step
    expected_value = (ex.value[1] - ex.value[0]) / (ex.answer_start + steps)
    assert mass.needle.shape == (n, 2, 4)
    np.testing.assert_allclose(mass.needle, np.broadcast_to(expected_needle[:, None, None], mass.needle.shape),
                               rtol=1e-5)
    np.testing.assert_allclose(mass.value, np.broadcast_to(expected_value[:, None, None], mass.value.shape),
                               rtol=1e-5)
    assert not mass.hit.any()  # argmax of a uniform row is position 0, outside the passkey


def test_kv_heads_average_their_query_group():
    needle = np.zeros((3, 2, 4), np.float32)  # 3 answer steps, 2 layers, 4 query heads (2 KV heads x 2)
    needle[:, 1, 3] = 0.8  # layer 1, query head 3 = KV head 1's second query head
    hit = np.zeros(needle.shape, bool)
    hit[:2, 1, 3] = True
    table = head_retrieval_table([NeedleMass(needle, needle / 2, hit, True, 0.1)], kv_heads=2)
    row = table.set_index(["layer", "kv_head"]).loc[(1, 1)]
    assert row["needle_mass"] == pytest.approx(0.4) and row["needle_mass_max"] == pytest.approx(0.8)
    assert row["passkey_mass"] == pytest.approx(0.2) and row["copy_hit_rate_max"] == pytest.approx(2 / 3)
    assert row["rank"] == 1 and (table["needle_mass"] > 0).sum() == 1


def test_cli_writes_the_table_and_marks_unstable_heads(bpe, tmp_path, monkeypatch):
    folder, _, _, held = bpe
    monkeypatch.setattr("tessera.runtime.profiling.windows.heldout_tokens", lambda *a, **k: held)
    (tmp_path / "u.tsv").write_text("layer\tkv_head\n1\t0\n")
    main(["--model", str(folder), "--out", str(tmp_path), "--context", "200", "--examples", "2",
          "--unstable", str(tmp_path / "u.tsv"), "--top", "2"])
    table = np.genfromtxt(tmp_path / "retrieval.csv", delimiter=",", names=True, dtype=None, encoding=None)
    assert len(table) == 4 and table["unstable"].sum() == 1
    summary = json.loads((tmp_path / "retrieval.json").read_text())
    assert len(summary["greedy_correct"]) == 2 and len(summary["top_heads"]) == 2
    assert np.array(summary["per_query_head_needle_mass"]).shape == (2, 4)
