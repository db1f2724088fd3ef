"""Diagnostic: how fast does a fresh model of the shipped shape learn to copy a repeated random segment?

Trains on [segment, segment] rows with a plain loop and prints the loss on the second copy (chance =
ln 94). With one fixed segment length (the default) a fixed-offset head solves it, so copying appears
in ~150 steps; with --min-segment the copy distance varies per row and only content matching (an
induction head) works, which takes far longer, the more so the longer the rows (MODEL_CARD.md).
Run: .venv/bin/python -m tessera.runtime.train.induction_probe [--steps 350] [--min-segment 24]
"""
from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from tessera.runtime.model import Transformer
from tessera.runtime.train.recipe import tiny_byte_model_config

PRINTABLE = (33, 127)  # the byte range the repeat task samples


def probe_rows(batch: int, segment: int, min_segment: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of 2 * segment random bytes whose first 2L are [x, x], L per row in [min_segment, segment];
    returns the rows and a (batch, 2 * segment - 1) mask of the targets that are second-copy bytes."""
    rows = torch.randint(*PRINTABLE, (batch, 2 * segment))
    is_copy = torch.zeros(batch, 2 * segment - 1, dtype=torch.bool)
    for b, L in enumerate(torch.randint(min_segment, segment + 1, (batch,)).tolist()):
        rows[b, L : 2 * L] = rows[b, :L]
        is_copy[b, L - 1 : 2 * L - 1] = True  # target t is row position t + 1
    return rows, is_copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=350)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--segment", type=int, default=48)
    parser.add_argument("--min-segment", type=int, default=None, help="vary the copy distance per row")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast, as the training loop uses")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    model = Transformer(tiny_byte_model_config())
    model.init_weights(args.seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    chance = math.log(PRINTABLE[1] - PRINTABLE[0])
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        rows, is_copy = probe_rows(args.batch, args.segment, args.min_segment or args.segment)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(rows)[:, :-1].float()
        losses = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="none")
        optimizer.zero_grad()
        losses.mean().backward()
        optimizer.step()
        if step % 50 == 0:
            copy_loss = losses[is_copy.flatten()].mean().item()
            print(f"step {step}: loss on the second copy {copy_loss:.3f} (chance {chance:.2f}), "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
