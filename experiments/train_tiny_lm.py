"""Train the shipped tiny byte-level Llama (models/tessera-tiny-byte) on stdlib text + retrieval tasks.

Train (about 23 minutes on one core; set OMP_WAIT_POLICY=PASSIVE on a shared machine):
    .venv/bin/python -m tessera.experiments.train_tiny_lm --threads 1 --out models/tessera-tiny-byte
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
from tessera.runtime.train.recipe import tiny_byte_train_config


def write_data_description(out: Path) -> None:
    """tokenizer_config.json (how load_tokenizer finds the byte vocabulary) and the held-out files."""
    (out / "tokenizer_config.json").write_text(json.dumps(ByteTokenizer().describe(), indent=2) + "\n")
    (out / "heldout_files.txt").write_text("\n".join(load_split("heldout").files) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/tessera-tiny-byte", help="checkpoint folder")
    parser.add_argument("--state", default="/tmp/tessera-tiny-lm/state.pt", help="resumable state file")
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
    train(tiny_byte_train_config(args.seed, args.smoke, args.threads), out, args.state)
    write_data_description(out)


if __name__ == "__main__":
    main()
