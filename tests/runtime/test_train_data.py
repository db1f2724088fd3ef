"""Training data: seeded task generators put the answers where they say; batches are reproducible."""
import numpy as np

from tessera.runtime.tokenizer import ByteTokenizer
from tessera.runtime.train.batches import Mixture, make_batch
from tessera.runtime.train.corpus import Corpus, is_heldout, stdlib_files
from tessera.runtime.train.tasks import (key_value_example, multikey_needle_example, needle_example,
                                         repeat_example)

HAYSTACK = np.frombuffer(("x = 1\nprint(x)\n" * 400).encode(), dtype=np.uint8)


def text(tokens):
    return bytes(tokens).decode()


def test_key_value_example_is_seeded_and_answers_match_the_dictionary():
    a = key_value_example(np.random.default_rng(5), 600, num_queries=6)
    b = key_value_example(np.random.default_rng(5), 600, num_queries=6)
    assert a == b and len(a.tokens) <= 600 and len(a.answers) == 6
    dictionary, lookups = text(a.tokens).split("Lookups:\n")
    pairs = dict(line.split("=") for line in dictionary.splitlines()[1:])
    for (start, end), answer in zip(a.answer_spans, a.answers):
        assert text(a.tokens[start:end]) == answer
        key = text(a.prompt_for(a.answers.index(answer))).splitlines()[-1].rstrip("=")
        assert pairs[key] == answer


def test_needle_example_hides_the_passkey_and_asks_for_it_last():
    ex = needle_example(np.random.default_rng(9), 1000, HAYSTACK)
    assert ex == needle_example(np.random.default_rng(9), 1000, HAYSTACK)
    assert len(ex.tokens) == 1000
    (start, end), passkey = ex.answer_spans[0], ex.answers[0]
    assert text(ex.tokens[start:end]) == passkey
    assert f"# The passkey is {passkey}. Remember it." in text(ex.prompt_for(0))
    assert text(ex.prompt_for(0)).endswith("The passkey is ")


def test_multikey_needles_are_hidden_at_line_starts_and_each_asked_once():
    ex = multikey_needle_example(np.random.default_rng(4), 900, HAYSTACK)
    assert ex == multikey_needle_example(np.random.default_rng(4), 900, HAYSTACK)
    assert len(ex.tokens) == 900 and len(ex.answers) == 4
    body = text(ex.prompt_for(0))
    notes = dict(line.removeprefix("# Note: key ").split("=") for line in body.splitlines()
                 if line.startswith("# Note: key "))
    assert len(notes) == 4 and "\n\n# Note: key " in body  # each note starts a line of the haystack
    asked = []
    for i, ((start, end), answer) in enumerate(zip(ex.answer_spans, ex.answers)):
        assert text(ex.tokens[start:end]) == answer
        key = text(ex.prompt_for(i)).splitlines()[-1].removeprefix("# Question: key ").rstrip("=")
        assert notes[key] == answer
        asked.append(key)
    assert sorted(asked) == sorted(notes)
    one = multikey_needle_example(np.random.default_rng(4), 900, HAYSTACK, num_queries=1)
    assert len(one.answers) == 1 and text(one.tokens).count("# Note: key ") == 4


def test_repeat_example_copies_each_segment_after_its_header():
    ex = repeat_example(np.random.default_rng(2), 600)
    assert ex == repeat_example(np.random.default_rng(2), 600) and 570 <= len(ex.tokens) <= 600
    assert len(ex.answers) >= 2 and len({len(a) for a in ex.answers}) > 1  # copy distances vary
    for (start, end), answer in zip(ex.answer_spans, ex.answers):
        assert text(ex.tokens[start:end]) == answer
        assert text(ex.prompt_for(ex.answers.index(answer))).endswith(answer + "\nAgain:\n")


def test_batches_depend_only_on_seed_and_step_and_mark_answers():
    tok = ByteTokenizer()
    corpus = Corpus(data=HAYSTACK.copy(), files=["fake.py"])
    mix = Mixture(text=1, kv=1, needle=1, repeat=1, kv_dense=1, multikey=1)
    a, b = (make_batch(0, 3, 8, 300, mix, corpus, tok) for _ in range(2))
    assert a.inputs.equal(b.inputs) and a.targets.equal(b.targets)
    assert not a.inputs.equal(make_batch(0, 4, 8, 300, mix, corpus, tok).inputs)
    assert a.inputs.shape == (8, 300) and (a.inputs[:, 0] == tok.bos_id).all()
    answer_bytes = a.targets[a.is_answer]
    assert len(answer_bytes) > 0 and all(48 <= t <= 57 for t in answer_bytes.tolist())  # digits


def test_dense_kv_rows_look_up_every_key():
    tok = ByteTokenizer()
    corpus = Corpus(data=HAYSTACK.copy(), files=["fake.py"])
    batch = make_batch(1, 0, 2, 300, Mixture(text=0, kv=0, needle=0, repeat=0, kv_dense=1), corpus, tok)
    dictionary, lookups = bytes(batch.inputs[0, 1:].tolist()).decode().split("Lookups:\n")
    pairs, asked = dictionary.splitlines()[1:], lookups.splitlines()
    assert len(pairs) == 16 and len(asked) == 15  # (300 - 21) // 9 = 31 lines: all but one key asked
    assert len(set(asked)) == 15 and set(asked) <= set(pairs)
    assert batch.is_answer[0].sum() == 4 * 15


def test_heldout_split_is_stable_and_disjoint():
    files = stdlib_files()
    heldout = [f for f in files if is_heldout(f)]
    assert 0 < len(heldout) < len(files) / 10
    assert "unittest/case.py" in heldout and "os.py" not in heldout
