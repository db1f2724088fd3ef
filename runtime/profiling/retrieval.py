"""Retrieval heads of a checkpoint: per (layer, KV head), the attention mass on a passkey needle while the
model produces the passkey (teacher-forced answer), over passkey examples hidden in held-out text.

An example is held-out tokens with "\\nThe pass key is N. Remember it." inserted before a line break at a
depth, then "\\nWhat is the pass key? The pass key is" and the answer " N" (pieces are tokenized separately
and joined before line breaks, so the needle is a line of its own and every position is known). The
queries that produce the answer's tokens are those of the last question token and of the answer's tokens
but the last; per such step, query head and layer: mass = softmax weight summed over the needle
sentence's positions (and over the passkey's own positions); hit = the most attended position holds the
token being produced, inside the passkey (the copy score of Wu et al., "Retrieval Head", 2024). A KV
head's value is the mean over its GQA group's query heads (and the max over them, `*_max`). Outputs in
--out: retrieval.csv, retrieval.json.

    nice -n 15 python -m tessera.runtime.profiling.retrieval --model models/smollm2-135m-instruct \\
        --out data/smollm2-head-stability --context 2048 --examples 10 \\
        --unstable data/smollm2-head-stability/head_stability.tsv
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NEEDLE = "\nThe pass key is {key}. Remember it."
QUESTION = "\nWhat is the pass key? The pass key is"
ANSWER = " {key}"


@dataclass
class NeedleExample:
    """One passkey prompt in tokens; positions index `tokens`."""

    tokens: list[int]  # prefix + haystack with the needle + question + answer
    answer_start: int  # first answer token; the answer runs to the end
    needle: tuple[int, int]  # [start, end) of the needle sentence
    value: tuple[int, int]  # [start, end) of the passkey's tokens inside the needle
    passkey: str
    depth: float  # where the needle sits in the haystack (0 = first line, 1 = last)


@dataclass
class NeedleMass:
    """Per answer step, layer and query head: mass on the needle, on the passkey, and the copy hit."""

    needle: np.ndarray  # float32 [answer_tokens, layers, query_heads]
    value: np.ndarray  # float32 [answer_tokens, layers, query_heads]
    hit: np.ndarray  # bool [answer_tokens, layers, query_heads]
    greedy_correct: bool  # the model's argmax reproduces every answer token
    answer_nll_bits: float  # mean -log2 p of the answer tokens


def line_breaks(ids: np.ndarray, decode) -> np.ndarray:
    """Indices of the tokens that begin with a line break (BPEs merge "\\n" with the next line's indent, so
    a token rarely ends with one)."""
    return np.flatnonzero([decode([int(t)]).startswith("\n") for t in ids])


def build_example(heldout, rng: np.random.Generator, context: int, depth: float, passkey: str) -> NeedleExample:
    """A passkey example of about `context` tokens before the answer (heldout: windows.HeldoutTokens)."""
    tok = heldout.tokenizer
    encode = lambda text: tok.encode(text, add_special_tokens=False)  # noqa: E731
    needle = encode(NEEDLE.format(key=passkey))
    question, answer = encode(QUESTION), encode(ANSWER.format(key=passkey))
    body = context - len(heldout.prefix) - len(needle) - len(question)
    start = int(rng.integers(0, len(heldout.ids) - body))
    hay = heldout.ids[start:start + body]
    breaks = line_breaks(hay, tok.decode)
    if len(breaks) < 2:
        raise ValueError("the haystack window has fewer than two line breaks to hide the needle at")
    hay = hay[:breaks[-1]]  # end at a line's end: the question brings its own "\n"
    at = int(breaks[np.argmin(np.abs(breaks[:-1] - depth * len(hay)))])
    before = heldout.prefix + hay[:at].tolist()
    tokens = before + needle + hay[at:].tolist() + question + answer
    first, last = char_span_tokens(needle, tok.decode, NEEDLE.index("{key}"), len(passkey))
    return NeedleExample(tokens, len(tokens) - len(answer), (len(before), len(before) + len(needle)),
                         (len(before) + first, len(before) + last), passkey, depth)


def char_span_tokens(ids: list[int], decode, start: int, length: int) -> tuple[int, int]:
    """[first, last) of the tokens whose text overlaps characters [start, start + length) of decode(ids)
    (a BPE may merge the passkey's digits with its neighbours: " 48", "139", "27.")."""
    ends = [len(decode(ids[:i + 1])) for i in range(len(ids))]
    begins = [0] + ends[:-1]
    hit = [i for i, (b, e) in enumerate(zip(begins, ends)) if b < start + length and e > start]
    return hit[0], hit[-1] + 1


def needle_mass(model, ex: NeedleExample, prefill_chunk: int = 512) -> NeedleMass:
    """Teacher-force ex.tokens from the last question token on and read every layer's attention."""
    import torch

    from tessera.runtime.profiling.record import teacher_force

    c = model.config
    n = len(ex.tokens) - ex.answer_start
    shape = (n, c.num_hidden_layers, c.num_attention_heads)
    needle, value = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    hit = np.zeros(shape, dtype=bool)
    ids = torch.tensor(ex.tokens)
    in_value = torch.zeros(len(ex.tokens), dtype=torch.bool)
    in_value[ex.value[0]:ex.value[1]] = True

    def observe(t, l, qg, keys, weights):
        if t >= n:  # the step fed the last answer token: it produces no answer token
            return
        w = weights.reshape(-1, weights.shape[-1])  # (Hq, S), query head = kv_head * group + j
        needle[t, l] = w[:, ex.needle[0]:ex.needle[1]].sum(-1).cpu().numpy()
        value[t, l] = w[:, ex.value[0]:ex.value[1]].sum(-1).cpu().numpy()
        top = w.argmax(-1).cpu()
        hit[t, l] = (in_value[top] & (ids[top] == ex.tokens[ex.answer_start + t])).numpy()

    forced = teacher_force(model, ex.tokens, ex.answer_start - 1, observe, prefill_chunk)
    answer = np.asarray(ex.tokens[ex.answer_start:])
    return NeedleMass(needle, value, hit, bool((forced.greedy[1:] == answer).all()),
                      float(forced.nll_bits[1:].mean()))


def head_retrieval_table(masses: list[NeedleMass], kv_heads: int) -> pd.DataFrame:
    """Per (layer, KV head): means over examples' answer steps, group mean and max over query heads."""
    needle = np.concatenate([m.needle for m in masses]).mean(0)  # [L, Hq]
    value = np.concatenate([m.value for m in masses]).mean(0)
    hit = np.concatenate([m.hit for m in masses]).mean(0)
    L, Hq = needle.shape
    grouped = lambda a: a.reshape(L, kv_heads, Hq // kv_heads)  # noqa: E731
    layer, head = np.indices((L, kv_heads)).reshape(2, -1)
    table = pd.DataFrame({
        "layer": layer, "kv_head": head,
        "needle_mass": grouped(needle).mean(-1).ravel(), "needle_mass_max": grouped(needle).max(-1).ravel(),
        "passkey_mass": grouped(value).mean(-1).ravel(), "passkey_mass_max": grouped(value).max(-1).ravel(),
        "copy_hit_rate": grouped(hit).mean(-1).ravel(), "copy_hit_rate_max": grouped(hit).max(-1).ravel(),
    })
    table["rank"] = table["needle_mass"].rank(ascending=False, method="first").astype(int)
    return table


def mark_unstable(table: pd.DataFrame, unstable_tsv: Path | None) -> pd.DataFrame:
    if unstable_tsv is None:
        return table
    from tessera.kvcache.head_lists import load_unstable_heads

    unstable = set(load_unstable_heads(unstable_tsv))
    table["unstable"] = [(l, h) in unstable for l, h in zip(table["layer"], table["kv_head"])]
    return table


def run(model_dir: Path, out: Path, context: int, examples: int, seed: int = 0,
        unstable_tsv: Path | None = None, top: int = 10, log=print) -> tuple[pd.DataFrame, dict]:
    from tessera.runtime.checkpoint import load_checkpoint
    from tessera.runtime.profiling.windows import heldout_tokens

    model = load_checkpoint(model_dir).eval()
    heldout = heldout_tokens(model_dir, model.config.bos_token_id)
    if heldout.tokenizer is None:
        raise ValueError(f"{model_dir} has no tokenizer files: the passkey prompt needs one")
    rng = np.random.default_rng(seed)
    depths = np.linspace(0.1, 0.9, examples) if examples > 1 else np.array([0.5])
    built, masses = [], []
    for i, depth in enumerate(depths):
        passkey = str(int(rng.integers(1_000_000, 10_000_000)))
        ex = build_example(heldout, rng, context, float(depth), passkey)
        start = time.perf_counter()
        masses.append(needle_mass(model, ex))
        built.append(ex)
        log(f"example {i + 1}/{len(depths)}: depth {depth:.2f}, {len(ex.tokens)} tokens, passkey {passkey}, "
            f"greedy {'right' if masses[-1].greedy_correct else 'wrong'}, {time.perf_counter() - start:.1f}s")
    table = mark_unstable(head_retrieval_table(masses, model.config.num_key_value_heads), unstable_tsv)
    needle_len = np.mean([e.needle[1] - e.needle[0] for e in built])
    summary = {
        "model": str(model_dir), "context": context, "examples": examples, "seed": seed,
        "query_heads_per_kv_head": model.config.num_attention_heads // model.config.num_key_value_heads,
        "greedy_correct": [m.greedy_correct for m in masses],
        "answer_nll_bits": [m.answer_nll_bits for m in masses],
        "uniform_needle_mass": float(needle_len / context),  # a head spreading its attention evenly
        "examples_detail": [{"passkey": e.passkey, "depth": e.depth, "tokens": len(e.tokens),
                             "needle": list(e.needle), "passkey_span": list(e.value)} for e in built],
        "top_heads": table.nsmallest(top, "rank")[["layer", "kv_head"]].values.tolist(),
        "per_query_head_needle_mass": np.concatenate([m.needle for m in masses]).mean(0).round(5).tolist(),
    }
    if "unstable" in table:
        top_rows = table.nsmallest(top, "rank")
        summary["top_heads_unstable"] = int(top_rows["unstable"].sum())
        summary["unstable_list"] = str(unstable_tsv)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "retrieval.csv", index=False, float_format="%.4f")
    (out / "retrieval.json").write_text(json.dumps(summary, indent=2) + "\n")
    return table, summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--context", type=int, default=2048, help="tokens before the answer")
    p.add_argument("--examples", type=int, default=10, help="passkey examples, depths evenly in 0.1..0.9")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=10, help="retrieval heads to list")
    p.add_argument("--unstable", type=Path, help="a head_stability.tsv to mark the unstable heads from")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    table, summary = run(args.model, args.out, args.context, args.examples, args.seed, args.unstable, args.top,
                         log=lambda msg: print(msg, flush=True))
    cols = [c for c in ("layer", "kv_head", "needle_mass", "needle_mass_max", "passkey_mass", "copy_hit_rate",
                        "copy_hit_rate_max", "unstable") if c in table]
    print(table.nsmallest(args.top, "rank")[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"greedy answer right in {sum(summary['greedy_correct'])}/{len(summary['greedy_correct'])} examples; "
          f"a uniform head would put {summary['uniform_needle_mass']:.4f} on the needle")
    if "top_heads_unstable" in summary:
        print(f"{summary['top_heads_unstable']} of the top {args.top} retrieval heads are in the unstable list")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
