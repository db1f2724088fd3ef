"""benchmarks/runtime_decode.py's code path on the shipped tiny model at tiny sizes (not its timings): the
table with the transformers column when transformers imports, a clean skip when it does not."""
import importlib.util
import re
import sys

import pytest
import torch

from tessera.paths import REPO_ROOT

ARGS = ["--model", "tiny", "--contexts", "40", "--batches", "1", "2", "--tokens", "4", "--rounds", "1"]


def load_benchmark():
    spec = importlib.util.spec_from_file_location("runtime_decode", REPO_ROOT / "benchmarks" / "runtime_decode.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("peer_prefill", ["shared", "own"])
def test_table_has_the_transformers_column(capsys, peer_prefill):
    pytest.importorskip("transformers")
    results = load_benchmark().main(ARGS + ["--peer-prefill", peer_prefill])
    out = capsys.readouterr().out
    for system in ("full", "quest", "flexicache", "transformers"):
        assert re.search(rf"^\s+40\s+2\s+{system}\s", out, re.MULTILINE)
        assert results[40, 2, system][0].decode_tokens == 2 * 3  # 3 timed steps of 2 requests
    assert "target full >= 1.0x transformers" in out and "target flexicache >= 2x full" in out
    # transformers decodes from the same prefill and prompts: greedy tokens as Tessera's full KV
    for batch in (1, 2):
        assert results[40, batch, "transformers"][0].tokens == results[40, batch, "full"][0].tokens


def test_comparison_is_skipped_without_transformers(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers raises ImportError
    results = load_benchmark().main(ARGS)
    captured = capsys.readouterr()
    assert "transformers comparison skipped" in captured.err
    assert "transformers: skipped" in captured.out
    assert not re.search(r"^\s+40\s+\d+\s+transformers\s", captured.out, re.MULTILINE)  # no transformers row
    assert {key[2] for key in results} == {"full", "quest", "flexicache"}
    assert "target flexicache >= 2x full" in captured.out


def test_unknown_model_names_the_fix():
    with pytest.raises(SystemExit, match="make smollm2"):
        load_benchmark().resolve_model("smollm2-missing")


def test_repeated_prompt_decodes_one_window_per_request(capsys):
    """--repeat-prompt: every request of a batch decodes the same window (greedy tokens all equal) from its
    own restored KV; the other policies restore the one prefill instead of computing it."""
    results = load_benchmark().main(ARGS + ["--no-peer", "--repeat-prompt"])
    out = capsys.readouterr().out
    assert "one window repeated per batch" in out
    tokens = results[40, 2, "full"][0].tokens
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert results[40, 1, "full"][0].tokens[0] == tokens[0]  # batch 1's window is batch 2's
