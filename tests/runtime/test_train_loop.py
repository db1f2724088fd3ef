"""The training loop's later phase: it starts from an earlier phase's checkpoint (RoPE may change, as in
context extension), or refuses clearly."""
import json

import pytest
import torch

from tessera.runtime.checkpoint import load_checkpoint, save_checkpoint
from tessera.runtime.config import ModelConfig, RopeScaling
from tessera.runtime.model import Transformer
from tessera.runtime.train.batches import Mixture
from tessera.runtime.train.loop import Stage, TrainConfig, train

CONFIG = ModelConfig(vocab_size=264, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
MIX = Mixture(text=0, kv=0, needle=0, repeat=0, copy=0, kv_dense=1, multikey=1)  # every row has answers


def phase(init_from, lr=1e-3, config=CONFIG, steps=3) -> TrainConfig:
    return TrainConfig(model=config, stages=[Stage(num_steps=steps, batch_size=2, seq_len=256)], mixture=MIX,
                       lr=lr, warmup_steps=1, num_threads=1, log_every=1, init_from=init_from)


def earlier_phase(folder) -> Transformer:
    model = Transformer(CONFIG)
    model.init_weights(seed=3)
    save_checkpoint(model, folder)
    return model


def test_a_later_phase_starts_from_the_earlier_checkpoint(tmp_path):
    earlier = earlier_phase(tmp_path / "phase1")
    frozen = train(phase(str(tmp_path / "phase1"), lr=0.0), tmp_path / "a", tmp_path / "a.pt")
    for name, tensor in earlier.state_dict().items():  # lr 0: the weights are exactly phase 1's
        assert torch.equal(frozen.state_dict()[name], tensor), name
    moved = train(phase(str(tmp_path / "phase1")), tmp_path / "b", tmp_path / "b.pt")
    assert not torch.equal(moved.state_dict()["lm_head.weight"], earlier.state_dict()["lm_head.weight"])
    assert torch.equal(load_checkpoint(tmp_path / "b").state_dict()["lm_head.weight"],
                       moved.state_dict()["lm_head.weight"])
    log = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and all(r["answer_loss"] > 0 for r in log)
    recorded = json.loads((tmp_path / "b" / "train_config.json").read_text())
    assert recorded["init_from"] == str(tmp_path / "phase1")


def test_a_later_phase_may_rescale_rope(tmp_path):
    earlier = earlier_phase(tmp_path / "phase1")
    extended = ModelConfig(**{**CONFIG.__dict__, "rope_scaling": RopeScaling(
        factor=8.0, original_max_position_embeddings=64)})
    model = train(phase(str(tmp_path / "phase1"), lr=0.0, config=extended, steps=1), tmp_path / "c",
                  tmp_path / "c.pt")
    assert model.config.rope_scaling.factor == 8.0
    assert torch.equal(model.state_dict()["lm_head.weight"], earlier.state_dict()["lm_head.weight"])
    assert load_checkpoint(tmp_path / "c").config.rope_scaling.factor == 8.0


def test_a_missing_or_different_earlier_phase_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="init_from=.*--phase 1"):
        train(phase(str(tmp_path / "nowhere")), tmp_path / "a", tmp_path / "a.pt")
    earlier_phase(tmp_path / "phase1")
    wider = ModelConfig(**{**CONFIG.__dict__, "hidden_size": 64})
    with pytest.raises(ValueError, match="init_from=.*architecture"):
        train(phase(str(tmp_path / "phase1"), config=wider), tmp_path / "b", tmp_path / "b.pt")
