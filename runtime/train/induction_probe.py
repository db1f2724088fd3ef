"""Diagnostic: can the shipped architecture learn induction (copy a repeated random sequence) at all?

Trains a fresh model of the shipped shape on [segment, segment] rows with a plain loop and prints the
loss on the second copy (chance = ln 94). Separates model/optimiser bugs from data/curriculum problems.
Run: .venv/bin/python -m tessera.runtime.train.induction_probe [--steps 350] [--lr 1e-3] [--bf16]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=350)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--segment", type=int, default=48)
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
        segment = torch.randint(*PRINTABLE, (args.batch, args.segment))
        rows = torch.cat([segment, segment], dim=1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(rows)[:, :-1].float()
        losses = F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="none")
        losses = losses.view(args.batch, -1)
        optimizer.zero_grad()
        losses.mean().backward()
        optimizer.step()
        if step % 50 == 0:
            copy_loss = losses[:, args.segment:].mean().item()
            print(f"step {step}: loss on the second copy {copy_loss:.3f} (chance {chance:.2f}), "
                  f"{time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
