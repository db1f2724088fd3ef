"""KV pool sizing by vLLM's rule, with hand-checked numbers."""
import pytest

from tessera.hardware import gpu
from tessera.memory import MemoryConfig, kv_bytes_per_token_per_gpu, num_kv_blocks
from tessera.models import model


def test_llama2_7b_on_h100_pool_by_hand():
    m, g = model("Llama-2-7B"), gpu("H100-SXM-80GB")
    mem = MemoryConfig(0.9, 2.0)
    budget = g.hbm_bytes * 0.9 - m.weight_bytes - 2 * 2**30
    assert num_kv_blocks(m, g, 1, mem, 16) == int(budget // (16 * 2 * 32 * 32 * 128 * 2))


def test_tensor_parallel_splits_kv_heads_and_replicates_when_fewer_heads_than_ranks():
    m = model("Llama-3.1-8B")  # 8 KV heads
    assert kv_bytes_per_token_per_gpu(m, 2) * 2 == m.kv_bytes_per_token
    assert kv_bytes_per_token_per_gpu(m, 8) == kv_bytes_per_token_per_gpu(m, 16)


def test_model_too_big_for_the_gpu_names_the_fix():
    with pytest.raises(MemoryError, match="more tensor parallelism"):
        num_kv_blocks(model("Llama-2-70B"), gpu("H100-SXM-80GB"), 1, MemoryConfig(), 16)


def test_bad_memory_config_names_the_field():
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        MemoryConfig(gpu_memory_utilization=0.0)
