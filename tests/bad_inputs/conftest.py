"""Shared setup of the bad-input corpus: one tiny checkpoint folder the runtime cases start from."""
import pytest
import torch

from tessera.runtime.checkpoint import save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.model import Transformer

TINY = {"vocab_size": 64, "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 128, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """A random-weight Llama checkpoint (vocabulary 64, context 128), built with one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny")
    model = Transformer(ModelConfig(**TINY))
    model.init_weights(seed=0)
    save_checkpoint(model, folder)
    yield folder
    torch.set_num_threads(threads)
