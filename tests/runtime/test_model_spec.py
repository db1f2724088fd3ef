"""The simulator's ModelSpec of a checkpoint folder, computed without torch, equals the loaded model's."""
import pytest
import torch

from tessera.runtime.checkpoint import load_checkpoint
from tessera.runtime.engine import model_spec
from tessera.runtime.model_spec import model_spec_from_folder
from tests.runtime.hf_models import VARIANTS, save_hf_model


@pytest.mark.parametrize("variant", ["llama_tied", "llama_bias_head_dim", "qwen2", "mistral_window"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_spec_from_config_equals_the_loaded_model(tmp_path, variant, dtype):
    pytest.importorskip("transformers")
    assert variant in VARIANTS
    hf = save_hf_model(variant, tmp_path, dtype=dtype)
    loaded = model_spec(load_checkpoint(tmp_path), "m")
    assert model_spec_from_folder(tmp_path, "m") == loaded
    assert loaded.num_params == sum(p.numel() for p in hf.parameters())  # transformers counts the same
