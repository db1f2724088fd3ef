"""Train the shipped tiny byte-level Llama (models/tessera-tiny-byte) on stdlib text + retrieval tasks.

Train both phases (phase 1 about 23 minutes on one core, phase 2 about 30; set OMP_WAIT_POLICY=PASSIVE on a
shared machine); phase 1 goes to --phase1-out, phase 2 starts from it and writes --out:
    .venv/bin/python -m tessera.experiments.train_tiny_lm --threads 1 --out models/tessera-tiny-byte
One phase: --phase 1 (writes --phase1-out) or --phase 2 (reads --phase1-out).
Evaluate (writes eval.json; add --context-lens 1024,2048,4096,8192 --num-examples 24 as in the card):
    .venv/bin/python -m tessera.experiments.train_tiny_lm --evaluate --out models/tessera-tiny-byte
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tessera.runtime.checkpoint import load_checkpoint
from tessera.runtime.tokenizer import ByteTokenizer
from tessera.runtime.train.corpus import load_split
from tessera.runtime.train.evaluate import evaluate
from tessera.runtime.train.loop import train
from tessera.runtime.train.recipe import tiny_byte_phase2_config, tiny_byte_train_config


def write_data_description(out: Path) -> None:
    """tokenizer_config.json (how load_tokenizer finds the byte vocabulary) and the held-out files."""
    (out / "tokenizer_config.json").write_text(json.dumps(ByteTokenizer().describe(), indent=2) + "\n")
    (out / "heldout_files.txt").write_text("\n".join(load_split("heldout").files) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/tessera-tiny-byte", help="checkpoint folder")
    parser.add_argument("--phase1-out", default="/tmp/tessera-tiny-lm/phase1", help="phase 1's checkpoint folder")
    parser.add_argument("--phase", choices=("1", "2", "both"), default="both")
    parser.add_argument("--state", default="/tmp/tessera-tiny-lm", help="folder of the resumable state files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--smoke", action="store_true", help="a few steps of each stage, to time them")
    parser.add_argument("--evaluate", action="store_true", help="measure --out, write eval.json")
    parser.add_argument("--context-lens", default="1024,2048,4096", help="for --evaluate")
    parser.add_argument("--num-examples", type=int, default=32, help="per task and length")
    args = parser.parse_args()
    out = Path(args.out)
    if args.evaluate:
        torch.set_num_threads(args.threads)
        lens = tuple(int(n) for n in args.context_lens.split(","))
        result = evaluate(load_checkpoint(out), load_split("heldout"), lens, args.num_examples)
        (out / "eval.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    state, phase1 = Path(args.state), Path(args.phase1_out)
    if args.phase in ("1", "both"):
        train(tiny_byte_train_config(args.seed, args.smoke, args.threads), phase1, state / "phase1.pt")
        write_data_description(phase1)
    if args.phase in ("2", "both"):
        train(tiny_byte_phase2_config(str(phase1), args.seed, args.smoke, args.threads), out, state / "phase2.pt")
        write_data_description(out)


if __name__ == "__main__":
    main()
