"""The shipped model's recipe: architecture, phase 1 (24-byte copy warm-up, then mixed rows to 8k) and
phase 2 (from phase 1's weights: dense retrieval rows at every length from 128 to 8k).

Sized for a 2-core machine shared with other jobs (a d=256 model ran at 3-6 s/step there).
"""
from __future__ import annotations

from dataclasses import replace

from tessera.runtime.config import ModelConfig, RopeScaling
from tessera.runtime.tokenizer import ByteTokenizer
from tessera.runtime.train.batches import Mixture
from tessera.runtime.train.loop import Stage, TrainConfig


def tiny_byte_model_config() -> ModelConfig:
    tok = ByteTokenizer()
    return ModelConfig(
        vocab_size=tok.vocab_size, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-5,
        # NOTE: with head_dim 32, rope_theta=500000 left too few fast-rotating pairs: a probe run never
        # learned a previous-token head (no copying after 400 steps) while 10000 did (MODEL_CARD.md)
        rope_theta=10000.0, max_position_embeddings=8192, tie_word_embeddings=False,
        bos_token_id=tok.bos_id, eos_token_id=tok.eos_id, pad_token_id=tok.pad_id,
    )


# NOTE: kv lookup and the passkey need induction (copy by content), and with copy distances that vary
# it starts only in short rows: 128-byte rows stayed at chance for 500-1,000 steps, 24-byte rows began
# within ~200. Answers began only after a long (1,200-step) copy stage at 48 bytes; 400 steps were not
# enough. Copy rows stay in every later stage (MODEL_CARD.md, "How the recipe was found").
COPY_WARMUP = Mixture(text=0.0, kv=0.0, needle=0.0, repeat=0.0, copy=1.0)
MIXED = Mixture(text=0.2, kv=0.25, needle=0.15, repeat=0.1, copy=0.3)
SHORT_RETRIEVAL = Mixture(text=0.1, kv=0.35, needle=0.15, repeat=0.1, copy=0.3)

CURRICULUM = [
    Stage(num_steps=300, batch_size=64, seq_len=12, mixture=COPY_WARMUP),
    Stage(num_steps=500, batch_size=32, seq_len=24, mixture=COPY_WARMUP),
    Stage(num_steps=1200, batch_size=32, seq_len=48, mixture=COPY_WARMUP),
    Stage(num_steps=800, batch_size=32, seq_len=128, mixture=SHORT_RETRIEVAL),
    Stage(num_steps=400, batch_size=16, seq_len=256),
    Stage(num_steps=150, batch_size=4, seq_len=1024),
    Stage(num_steps=80, batch_size=2, seq_len=2048),
    Stage(num_steps=30, batch_size=1, seq_len=4096),
    Stage(num_steps=8, batch_size=1, seq_len=8192),  # 4-20 s a step here: a taste of 8k positions
]

# NOTE: phase 1 left kv lookups at chance even in 128-byte rows and passkeys at chance beyond 512 bytes:
# its kv rows ask at most 8 keys (a few % of the row) and it saw 4k-8k rows for 38 steps. Phase 2 asks
# every key (kv_dense, ~45% of a row is answers), adds multi-key needles, and climbs to 8k in steps,
# because a stage at length L alone did not carry over to 2L (probes, MODEL_CARD.md).
RETRIEVAL = Mixture(text=0.1, kv=0.0, needle=0.2, repeat=0.0, copy=0.1, kv_dense=0.3, multikey=0.3)

PHASE2_CURRICULUM = [
    Stage(num_steps=300, batch_size=32, seq_len=128),
    Stage(num_steps=300, batch_size=16, seq_len=256),
    Stage(num_steps=400, batch_size=8, seq_len=512),
    Stage(num_steps=500, batch_size=4, seq_len=1024),
    Stage(num_steps=600, batch_size=2, seq_len=2048),
    Stage(num_steps=300, batch_size=1, seq_len=4096),
    Stage(num_steps=100, batch_size=1, seq_len=8192),
]

SMOKE_CURRICULUM = [
    Stage(num_steps=3, batch_size=32, seq_len=24, mixture=COPY_WARMUP),
    Stage(num_steps=6, batch_size=16, seq_len=256),
    Stage(num_steps=4, batch_size=4, seq_len=1024),
    Stage(num_steps=3, batch_size=1, seq_len=4096),
    Stage(num_steps=2, batch_size=1, seq_len=8192),
]


def tiny_byte_train_config(seed: int = 0, smoke: bool = False, num_threads: int = 2) -> TrainConfig:
    """Phase 1, from random weights."""
    stages = SMOKE_CURRICULUM if smoke else CURRICULUM
    return TrainConfig(model=tiny_byte_model_config(), stages=stages, mixture=MIXED, seed=seed, lr=3e-3,
                       weight_decay=0.0, warmup_steps=20, num_threads=num_threads,
                       log_every=1 if smoke else 10)


def tiny_byte_phase2_model_config() -> ModelConfig:
    """Phase 1's model with Llama-3 RoPE scaling: wavelengths under 256 tokens (the previous-token and
    short-copy heads' pairs) unchanged, those over 1,024 stretched 32x. Then 7 of head_dim 32's 16 pairs
    turn less than a quarter circle over 8k tokens and can match content at any distance there; with
    plain theta 10000 only one pair does."""
    scaling = RopeScaling(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                          original_max_position_embeddings=1024)
    return replace(tiny_byte_model_config(), rope_scaling=scaling)


def tiny_byte_phase2_config(init_from: str, seed: int = 0, smoke: bool = False,
                            num_threads: int = 2) -> TrainConfig:
    """Phase 2, from phase 1's checkpoint folder: its own warm-up and cosine, batches seeded by seed + 1."""
    stages = SMOKE_CURRICULUM if smoke else PHASE2_CURRICULUM
    return TrainConfig(model=tiny_byte_phase2_model_config(), stages=stages, mixture=RETRIEVAL, seed=seed + 1,
                       lr=2e-3, weight_decay=0.0, warmup_steps=30, num_threads=num_threads,
                       log_every=1 if smoke else 10, init_from=init_from)
