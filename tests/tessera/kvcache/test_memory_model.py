"""Experiment 1's analytic memory: FlexiCache saves > 70% at 20k tokens and tends to 75% (MinMax excluded)."""
import pytest

from tessera.kvcache.memory_model import gpu_kv_memory_table


def test_flexicache_savings_match_the_paper():
    df = gpu_kv_memory_table(seq_lens=(20_000, 1_000_000)).set_index(["model", "policy", "seq_len"])
    for name in ("Llama-3.1-8B", "Mistral-7B-v0.2"):
        at_20k, far = df.loc[(name, "flexicache", 20_000)], df.loc[(name, "flexicache", 1_000_000)]
        assert at_20k.saving_kv_only > 0.70 and far.saving_kv_only == pytest.approx(0.75, abs=0.002)
        assert at_20k.saving_with_minmax == pytest.approx(0.649, abs=0.002)  # flexicache.md §5.5 arithmetic
        assert df.loc[(name, "full", 20_000)].saving_kv_only == 0.0
        assert df.loc[(name, "quest", 20_000)].saving_with_minmax == pytest.approx(-1 / 16, abs=0.001)
