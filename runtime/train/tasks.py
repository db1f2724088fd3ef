"""Synthetic retrieval tasks: key-value lookup, passkey needle-in-a-haystack, and repeated random text.

Each generator takes a numpy Generator and a target length in tokens (bytes) and returns a
RetrievalExample whose answer_spans say exactly which token positions hold the answers.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field

import numpy as np

KEY_LETTERS = np.array(list(string.ascii_lowercase))
KEY_LEN = 3
VALUE_DIGITS = 4
PASSKEY_DIGITS = 5
KV_HEADER = "Dictionary:\n"
KV_QUERY_HEADER = "Lookups:\n"
NEEDLE = "\n# The passkey is {passkey}. Remember it.\n"
REPEAT_HEADER = "\nAgain:\n"
REPEAT_MIN, REPEAT_MAX = 8, 64
COPY_MIN, COPY_MAX = 3, 12
NEEDLE_QUESTION = "\n# Question: what is the passkey? The passkey is "
MULTIKEY_NEEDLE = "\n# Note: key {key}={value}\n"
MULTIKEY_QUESTION = "\n# Question: key {key}="
MULTIKEY_NEEDLES = 4


@dataclass
class RetrievalExample:
    """tokens: the whole sequence (no bos). answer_spans: [start, end) token ranges of answers,
    each preceded by its prompt; answers: the answer strings, in the same order."""

    tokens: list[int]
    answer_spans: list[tuple[int, int]] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)

    def prompt_for(self, i: int) -> list[int]:
        """Tokens up to (not including) answer i: what a greedy decoder is given."""
        return self.tokens[: self.answer_spans[i][0]]


def _encode(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def _unique_keys(rng: np.random.Generator, count: int) -> list[str]:
    keys: dict[str, None] = {}
    while len(keys) < count:
        keys["".join(rng.choice(KEY_LETTERS, KEY_LEN))] = None
    return list(keys)


def kv_lines(length: int) -> int:
    """How many "key=value" lines (dictionary and lookups together) a kv example of `length` tokens holds."""
    return (length - len(KV_HEADER) - len(KV_QUERY_HEADER)) // (KEY_LEN + 1 + VALUE_DIGITS + 1)


def key_value_example(rng: np.random.Generator, length: int, num_queries: int | None = None) -> RetrievalExample:
    """"Dictionary:" then "key=value" lines, then "Lookups:" and `num_queries` of the keys again,
    each followed by its value (the answer). Total length <= `length` tokens.
    num_queries None: a quarter of the lines, at most 8."""
    num_lines = kv_lines(length)
    num_queries = num_queries or min(8, num_lines // 4)
    num_pairs = num_lines - num_queries
    assert num_pairs >= num_queries, f"length {length} too short for {num_queries} queries"
    keys = _unique_keys(rng, num_pairs)
    values = ["".join(map(str, rng.integers(0, 10, VALUE_DIGITS))) for _ in keys]
    tokens = _encode(KV_HEADER + "".join(f"{k}={v}\n" for k, v in zip(keys, values)) + KV_QUERY_HEADER)
    example = RetrievalExample(tokens=tokens)
    for i in rng.choice(num_pairs, num_queries, replace=False):
        tokens += _encode(f"{keys[i]}=")
        example.answer_spans.append((len(tokens), len(tokens) + VALUE_DIGITS))
        example.answers.append(values[i])
        tokens += _encode(values[i] + "\n")
    return example


def _insert_at_line_starts(rng: np.random.Generator, hay: list[int], needles: list[list[int]]) -> list[int]:
    """hay with each needle inserted right after a newline at a random spot (in random order)."""
    cuts = []
    for _ in needles:
        cut = int(rng.integers(0, len(hay) + 1))
        cuts.append(hay.index(10, cut) + 1 if 10 in hay[cut:] else len(hay))
    out, prev = [], 0
    for cut, needle in sorted(zip(cuts, needles), key=lambda pair: pair[0]):
        out += hay[prev:cut] + needle
        prev = cut
    return out + hay[prev:]


def needle_example(rng: np.random.Generator, length: int, haystack: np.ndarray) -> RetrievalExample:
    """A passkey sentence hidden at a random line start inside stdlib text, asked at the end."""
    passkey = "".join(map(str, rng.integers(1, 10, PASSKEY_DIGITS)))
    needle = _encode(NEEDLE.format(passkey=passkey))
    question = _encode(NEEDLE_QUESTION)
    tail = _encode(".\n")
    hay_len = length - len(needle) - len(question) - PASSKEY_DIGITS - len(tail)
    start = int(rng.integers(0, len(haystack) - hay_len))
    tokens = _insert_at_line_starts(rng, haystack[start : start + hay_len].tolist(), [needle]) + question
    span = (len(tokens), len(tokens) + PASSKEY_DIGITS)
    tokens += _encode(passkey) + tail
    return RetrievalExample(tokens=tokens, answer_spans=[span], answers=[passkey])


def multikey_needle_example(rng: np.random.Generator, length: int, haystack: np.ndarray,
                            num_needles: int = MULTIKEY_NEEDLES, num_queries: int | None = None) -> RetrievalExample:
    """RULER's multi-key needle: `num_needles` "key abc=1234" notes (unique 3-letter keys) hidden at random
    line starts in stdlib text, then `num_queries` of the keys asked at the end (all by default), in random
    order. The distractor notes share the format, so the key itself must be matched, not just the phrase."""
    keys = _unique_keys(rng, num_needles)
    values = ["".join(map(str, rng.integers(0, 10, VALUE_DIGITS))) for _ in keys]
    needles = [_encode(MULTIKEY_NEEDLE.format(key=k, value=v)) for k, v in zip(keys, values)]
    asked = rng.permutation(num_needles)[: num_queries or num_needles]
    question_len = sum(len(MULTIKEY_QUESTION.format(key=keys[i])) + VALUE_DIGITS for i in asked) + 1
    hay_len = length - sum(map(len, needles)) - question_len
    assert hay_len > 0, f"length {length} too short for {num_needles} needles"
    start = int(rng.integers(0, len(haystack) - hay_len))
    tokens = _insert_at_line_starts(rng, haystack[start : start + hay_len].tolist(), needles)
    example = RetrievalExample(tokens=tokens)
    for i in asked:
        tokens += _encode(MULTIKEY_QUESTION.format(key=keys[i]))
        example.answer_spans.append((len(tokens), len(tokens) + VALUE_DIGITS))
        example.answers.append(values[i])
        tokens += _encode(values[i])
    tokens += _encode("\n")
    return example


def repeat_example(rng: np.random.Generator, length: int) -> RetrievalExample:
    """Segments of random printable ASCII, each followed by "Again:" and itself: a copy is predictable
    only by looking back (the induction-head pattern), a dense signal that speeds up retrieval.
    NOTE: segment lengths are uniform in what room is left, so the copy distance varies; whenever
    one distance dominated, the model learned to copy from that fixed offset instead of by content."""
    tokens, example = [], RetrievalExample(tokens=[])
    while True:
        room = min(REPEAT_MAX, (length - len(tokens) - len(REPEAT_HEADER)) // 2)
        if room < REPEAT_MIN:
            break
        seg_len = int(rng.integers(REPEAT_MIN, room + 1))
        segment = rng.integers(33, 127, seg_len).tolist()  # printable, no whitespace
        tokens += segment + _encode(REPEAT_HEADER)
        example.answer_spans.append((len(tokens), len(tokens) + seg_len))
        example.answers.append(bytes(segment).decode())
        tokens += segment
    example.tokens = tokens
    return example


def copy_example(rng: np.random.Generator, length: int) -> RetrievalExample:
    """Short random printable segments, each written twice back to back with no header. The copy
    distance changes with every segment, so only content matching (an induction head) predicts it.
    NOTE: short segments in short rows are what let induction start: in 128-byte rows it did not within
    500-1,000 steps (MODEL_CARD.md). The second copies' loss is the training log's copy_loss."""
    example = RetrievalExample(tokens=[])
    tokens = example.tokens
    while length - len(tokens) >= 2 * COPY_MIN:
        seg_len = int(rng.integers(COPY_MIN, min(COPY_MAX, (length - len(tokens)) // 2) + 1))
        segment = rng.integers(33, 127, seg_len).tolist()
        tokens += segment
        example.answer_spans.append((len(tokens), len(tokens) + seg_len))
        example.answers.append(bytes(segment).decode())
        tokens += segment
    return example
