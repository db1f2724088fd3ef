"""A tiny random checkpoint with a real byte-level BPE tokenizer.json (SmolLM2's kind), for the profilers.

The BPE is trained on a few hundred lines of stdlib text in well under a second; with_bos adds a Llama-style
post-processor that puts BOS first (SmolLM2's adds none).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tessera.runtime.checkpoint import save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.model import Transformer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2, as in SmolLM2


def save_tiny_bpe_checkpoint(folder: Path, with_bos: bool = False, vocab_size: int = 320) -> Transformer:
    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([Path(os.__file__).read_text()[:20000]], trainer)
    if with_bos:
        hf.post_processor = processors.TemplateProcessing(single="<|im_start|> $A",
                                                          special_tokens=[("<|im_start|>", 1)])
    folder.mkdir(parents=True, exist_ok=True)
    hf.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>"}))
    model = Transformer(ModelConfig(vocab_size=hf.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                    bos_token_id=1, eos_token_id=2))
    model.init_weights(seed=1, std=0.2)
    save_checkpoint(model, folder)
    return model.eval()
