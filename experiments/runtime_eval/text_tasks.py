"""RULER-style retrieval tasks in real text for a model with its own tokenizer: needles hidden in held-out
Python stdlib source at a spread of depths, `context_len` of the model's tokens in all.

Tasks (RULER's templates, NVIDIA/RULER scripts/data/synthetic/constants.py, with stdlib source as the
haystack instead of essays): niah_single (one "special magic number" needle), niah_multikey (four needles
under different keys, one asked), niah_multivalue (four numbers under one key, all asked), passkey (the
classic pass key). The whole prompt (instruction, context, question, answer prefix) is prefilled densely,
as Quest and FlexiCache evaluate; the answer is decoded greedily under the KV policy. A value counts as
found when it appears in the decoded answer (RULER's string match).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from tessera.runtime.sequence import SamplingParams

TEXT_TASKS = ("niah_single", "niah_multikey", "niah_multivalue", "passkey")
PROMPT_FORMATS = ("plain", "chat")
HEADER = ("Some special magic numbers are hidden within the following text. Make sure to memorize it. "
          "I will quiz you about the numbers afterwards.\n")
NEEDLE = "One of the special magic numbers for {key} is: {value}."
QUESTION = "What is the special magic number for {key} mentioned in the provided text?"
ANSWER_PREFIX = "The special magic number for {key} mentioned in the provided text is"
MULTIVALUE_QUESTION = "What are all the special magic numbers for {key} mentioned in the provided text?"
MULTIVALUE_PREFIX = "The special magic numbers for {key} mentioned in the provided text are"
PASSKEY_HEADER = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
                  "I will quiz you about the important information there.\n")
PASSKEY_NEEDLE = "The pass key is {value}. Remember it. {value} is the pass key."
PASSKEY_QUESTION = "What is the pass key?"
PASSKEY_PREFIX = "The pass key is"
NUM_NEEDLES = 4  # multikey: 1 asked + 3 distractors; multivalue: 4 values of one key
VALUE_DIGITS = 7
ANSWER_TOKENS = {"niah_multivalue": 48}  # free tokens decoded per item; others ANSWER_TOKENS_DEFAULT
ANSWER_TOKENS_DEFAULT = 16


@dataclass
class TextItem:
    """prompt: every token prefilled (dense); answer_tokens decoded under the policy; values: what must
    appear in the decoded answer. depth: the asked needle's position in the context, 0 (start) .. 1."""

    prompt: list[int]
    answer_tokens: int
    values: tuple[str, ...]
    depth: float

    def params(self, score: bool = False) -> SamplingParams:
        return SamplingParams(max_tokens=self.answer_tokens, ignore_eos=True)


def key_words(text: str, count: int = 400) -> list[str]:
    """Common lower-case English-looking words of the haystack (4-9 letters), the pool RULER-style
    "word-word" keys are drawn from; sorted, so the pool is the same on every machine."""
    counts: dict[str, int] = {}
    for word in re.findall(r"\b[a-z]{4,9}\b", text):
        counts[word] = counts.get(word, 0) + 1
    common = sorted(counts, key=lambda w: (-counts[w], w))[:count]
    return sorted(common)


def text_items(task: str, context_len: int, num_examples: int, tokenizer, lines: list[str], words: list[str],
               seed: int, prompt_format: str = "plain") -> list[TextItem]:
    """num_examples items of about context_len tokens (prompt + answer), the asked needle at depths spread
    evenly over the context ((i + 0.5) / n)."""
    if task not in TEXT_TASKS:
        raise ValueError(f"task {task!r} is not a text task: use one of {', '.join(TEXT_TASKS)}")
    rng = np.random.default_rng([seed, context_len, TEXT_TASKS.index(task), 12])
    items = []
    for i in range(num_examples):
        depth = (i + 0.5) / num_examples
        needles, values, header, question, prefix = _task_text(task, rng, words)
        answer = ANSWER_TOKENS.get(task, ANSWER_TOKENS_DEFAULT)
        frame = _render(tokenizer, header, "", question, prefix, prompt_format)
        needle_tokens = sum(len(tokenizer.encode(" " + n, add_special_tokens=False)) for n in needles)
        target = context_len - answer  # prompt tokens
        budget = target - len(frame) - needle_tokens
        if budget < 64:
            raise ValueError(f"context_len={context_len} leaves {budget} tokens of haystack: use a longer context")
        start = int(rng.integers(0, len(lines)))
        depths = [depth] + list(rng.uniform(0, 1, len(needles) - 1))  # the asked needle first
        for _ in range(6):  # lines counted one by one overcount joined text: top up to the target
            context = _insert(_haystack(start, lines, tokenizer, budget), needles, depths)
            prompt = _render(tokenizer, header, context, question, prefix, prompt_format)
            if target - len(prompt) <= max(8, target // 200) or len(prompt) > target:
                break
            budget += target - len(prompt)
        while len(prompt) > target:  # the last top-up overshot: drop haystack lines until it fits
            budget -= len(prompt) - target + 4
            context = _insert(_haystack(start, lines, tokenizer, budget), needles, depths)
            prompt = _render(tokenizer, header, context, question, prefix, prompt_format)
        items.append(TextItem(prompt, answer, values, depth))
    return items


def _task_text(task: str, rng: np.random.Generator, words: list[str]):
    def key() -> str:
        a, b = rng.choice(len(words), 2, replace=False)
        return f"{words[a]}-{words[b]}"

    def value() -> str:
        return str(int(rng.integers(10 ** (VALUE_DIGITS - 1), 10**VALUE_DIGITS)))

    if task == "passkey":
        v = value()
        return [PASSKEY_NEEDLE.format(value=v)], (v,), PASSKEY_HEADER, PASSKEY_QUESTION, PASSKEY_PREFIX
    k = key()
    if task == "niah_single":
        v = value()
        return [NEEDLE.format(key=k, value=v)], (v,), HEADER, QUESTION.format(key=k), ANSWER_PREFIX.format(key=k)
    if task == "niah_multikey":
        keys = [k]
        while len(keys) < NUM_NEEDLES:
            other = key()
            if other not in keys:
                keys.append(other)
        vals = [value() for _ in keys]
        needles = [NEEDLE.format(key=kk, value=vv) for kk, vv in zip(keys, vals)]
        return needles, (vals[0],), HEADER, QUESTION.format(key=k), ANSWER_PREFIX.format(key=k)
    vals = [value() for _ in range(NUM_NEEDLES)]
    needles = [NEEDLE.format(key=k, value=v) for v in vals]
    return needles, tuple(vals), HEADER, MULTIVALUE_QUESTION.format(key=k), MULTIVALUE_PREFIX.format(key=k)


def _haystack(start: int, lines: list[str], tokenizer, budget: int) -> list[str]:
    """Consecutive held-out lines from line `start` until they hold `budget` tokens (counted per line)."""
    out, used, i = [], 0, start
    while used < budget:
        line = lines[i % len(lines)]
        n = len(tokenizer.encode(line + "\n", add_special_tokens=False))
        if used + n > budget:
            break
        out.append(line)
        used += n
        i += 1
    return out


def _insert(hay: list[str], needles: list[str], depths: list[float]) -> str:
    """The haystack lines with each needle on a line of its own at its depth (a line boundary)."""
    lines = list(hay)
    for needle, depth in sorted(zip(needles, depths), key=lambda p: -p[1]):  # deepest first keeps indices valid
        lines.insert(round(depth * len(hay)), needle)
    return "\n".join(lines)


def _render(tokenizer, header: str, context: str, question: str, prefix: str, prompt_format: str) -> list[int]:
    body = f"{header}{context}\n{question}"
    if prompt_format == "chat":
        text = tokenizer.apply_chat_template([{"role": "user", "content": body}], add_generation_prompt=True)
        return tokenizer.encode(text + prefix, add_special_tokens=False)
    return tokenizer.encode(f"{body} {prefix}")


def score_text(item: TextItem, decoded: str) -> tuple[int, float, bool]:
    """(exact: every value found, share of the values found, first value's first digit right)."""
    found = [v in decoded for v in item.values]
    first_number = re.search(r"\d", decoded)
    first_digit = bool(first_number) and first_number.group(0) == item.values[0][0]
    return int(all(found)), sum(found) / len(found), first_digit


def wilson_interval(successes: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (successes out of n)."""
    if n == 0:
        return math.nan, math.nan
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def heldout_lines(text: str) -> list[str]:
    """Non-empty lines of the held-out text (no form feeds or control characters)."""
    return [line.rstrip() for line in text.splitlines() if line.strip() and line.isprintable()]


def text_ppl_items(prefix_tokens: int, scored_tokens: int, num_windows: int, tokenizer, text: str, seed: int):
    """Held-out windows in the model's tokens: prefix_tokens prefilled, then scored_tokens + 1 forced (the
    first is predicted by the dense prefill, so the scored_tokens after it are scored); bits per byte
    divide by the UTF-8 bytes those scored tokens spell."""
    from tessera.experiments.runtime_eval.items import Item

    ids = tokenizer.encode(text, add_special_tokens=False)
    bos = tokenizer.encode("", add_special_tokens=True)  # the specials a prompt starts with (none for SmolLM2)
    n = prefix_tokens - len(bos) + scored_tokens + 1
    rng = np.random.default_rng([seed, prefix_tokens, 99])
    starts = rng.choice(len(ids) - n, size=num_windows, replace=False)
    items = []
    for s in starts:
        window = ids[s:s + n]
        forced = window[n - scored_tokens - 1:]
        scored_bytes = len(tokenizer.decode(forced[1:]).encode("utf-8"))
        items.append(Item(bos + window[:n - scored_tokens - 1], tuple(forced), [], scored_bytes))
    return items
