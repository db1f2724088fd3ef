"""The training loop: AdamW, warmup + cosine LR, bf16 autocast on CPU, a context-length curriculum.

Progress goes to a log file; a resumable state (model, optimizer, step) is saved every few minutes.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from tessera.runtime.checkpoint import load_checkpoint, save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.model import Transformer
from tessera.runtime.tokenizer import ByteTokenizer
from tessera.runtime.train.batches import Mixture, make_batch
from tessera.runtime.train.corpus import load_split


@dataclass
class Stage:
    num_steps: int
    batch_size: int
    seq_len: int
    mixture: Mixture | None = None  # None: the run's TrainConfig.mixture
    lr_scale: float = 1.0  # multiplies the run's warmup + cosine schedule during this stage


@dataclass
class TrainConfig:
    model: ModelConfig
    stages: list[Stage]
    mixture: Mixture = field(default_factory=Mixture)
    seed: int = 0
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 100
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    bf16_autocast: bool = True
    num_threads: int = 2
    log_every: int = 10
    save_every_s: float = 300.0
    init_from: str | None = None  # a checkpoint folder whose weights start the run (a later phase)

    @property
    def total_steps(self) -> int:
        return sum(s.num_steps for s in self.stages)

    def stage_at(self, step: int) -> Stage:
        for stage in self.stages:
            if step < stage.num_steps:
                return stage
            step -= stage.num_steps
        raise IndexError(step)


def lr_at(cfg: TrainConfig, step: int) -> float:
    scale = cfg.lr * cfg.stage_at(min(step, cfg.total_steps - 1)).lr_scale
    if step < cfg.warmup_steps:
        return scale * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return scale * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def make_optimizer(model: Transformer, cfg: TrainConfig) -> torch.optim.AdamW:
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)


def train_step(model, optimizer, batch, cfg: TrainConfig, lr: float) -> dict:
    for group in optimizer.param_groups:
        group["lr"] = lr
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16_autocast):
        logits = model(batch.inputs)
    token_loss = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), reduction="none")
    counted = batch.targets.flatten() != -100
    loss = token_loss[counted].mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    return {"loss": loss.item(), "answer_loss": _masked_mean(token_loss, batch.is_answer),
            "copy_loss": _masked_mean(token_loss, batch.is_copy), "grad_norm": grad_norm.item(),
            "tokens": int(counted.sum())}


def _masked_mean(token_loss: torch.Tensor, mask: torch.Tensor) -> float:
    mask = mask.flatten()
    return token_loss[mask].mean().item() if mask.any() else float("nan")


def train(cfg: TrainConfig, out_dir: str | Path, state_path: str | Path) -> Transformer:
    torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    out_dir, state_path = Path(out_dir), Path(state_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus, tok = load_split("train"), ByteTokenizer()
    model = _initial_model(cfg)
    optimizer = make_optimizer(model, cfg)
    step, tokens_seen, elapsed_before = 0, 0, 0.0
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, tokens_seen, elapsed_before = state["step"], state["tokens_seen"], state["elapsed_s"]
    log = (out_dir / "train_log.jsonl").open("a")
    start, last_save = time.time(), time.time()
    while step < cfg.total_steps:
        stage = cfg.stage_at(step)
        mixture = stage.mixture or cfg.mixture
        batch = make_batch(cfg.seed, step, stage.batch_size, stage.seq_len, mixture, corpus, tok)
        stats = train_step(model, optimizer, batch, cfg, lr_at(cfg, step))
        step += 1
        tokens_seen += stats.pop("tokens")
        elapsed = elapsed_before + time.time() - start
        if step % cfg.log_every == 0 or step == cfg.total_steps:
            record = {"step": step, "seq_len": stage.seq_len, "batch_size": stage.batch_size,
                      "lr": lr_at(cfg, step - 1), "tokens_seen": tokens_seen, "elapsed_s": round(elapsed, 1),
                      **{k: round(v, 4) for k, v in stats.items()}}
            log.write(json.dumps(record) + "\n")
            log.flush()
        if time.time() - last_save > cfg.save_every_s or step == cfg.total_steps:
            _save_state(state_path, model, optimizer, step, tokens_seen, elapsed)
            last_save = time.time()
    save_checkpoint(model, out_dir)
    (out_dir / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2, default=str) + "\n")
    return model


def _initial_model(cfg: TrainConfig) -> Transformer:
    """Fresh weights from cfg.seed, or cfg.init_from's weights. A later phase keeps the earlier phase's
    tensors but may change RoPE (rope_theta, rope_scaling), as context extension does."""
    model = Transformer(cfg.model)
    if cfg.init_from is None:
        model.init_weights(cfg.seed)
        return model
    folder = Path(cfg.init_from)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"init_from={folder}: no config.json there; train the earlier phase into "
                                f"that folder first (experiments/train_tiny_lm.py --phase 1)")
    earlier = load_checkpoint(folder, dtype=torch.float32)
    rope_fields = {"rope_theta": cfg.model.rope_theta, "rope_scaling": cfg.model.rope_scaling}
    if replace(earlier.config, **rope_fields) != cfg.model:
        raise ValueError(f"init_from={folder}: its config.json differs from the run's model config beyond "
                         f"RoPE; a later phase must keep the earlier phase's architecture")
    model.load_state_dict(earlier.state_dict())
    return model


def _save_state(path: Path, model, optimizer, step: int, tokens_seen: int, elapsed: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "tokens_seen": tokens_seen, "elapsed_s": elapsed}, tmp)
    tmp.replace(path)
