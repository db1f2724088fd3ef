"""Training data: seeded task generators put the answers where they say; batches are reproducible."""
import numpy as np

from tessera.runtime.tokenizer import ByteTokenizer
from tessera.runtime.train.batches import Mixture, make_batch
from tessera.runtime.train.corpus import Corpus, is_heldout, stdlib_files
from tessera.runtime.train.tasks import key_value_example, needle_example, repeat_example

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
    mix = Mixture(text=1, kv=1, needle=1, repeat=1)
    a, b = (make_batch(0, 3, 8, 300, mix, corpus, tok) for _ in range(2))
    assert a.inputs.equal(b.inputs) and a.targets.equal(b.targets)
    assert not a.inputs.equal(make_batch(0, 4, 8, 300, mix, corpus, tok).inputs)
    assert a.inputs.shape == (8, 300) and (a.inputs[:, 0] == tok.bos_id).all()
    answer_bytes = a.targets[a.is_answer]
    assert len(answer_bytes) > 0 and all(48 <= t <= 57 for t in answer_bytes.tolist())  # digits


def test_heldout_split_is_stable_and_disjoint():
    files = stdlib_files()
    heldout = [f for f in files if is_heldout(f)]
    assert 0 < len(heldout) < len(files) / 10
    assert "unittest/case.py" in heldout and "os.py" not in heldout
