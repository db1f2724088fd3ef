"""experiment=runtime_accuracy: the quick run through the CLI writes its table (every policy x budget,
retention against full) and figure; items put every answer after the dense prefill; budgets map onto
each policy as documented; a profiled head list drives head_split and flexicache."""
import json

import numpy as np
import pandas as pd
import pytest

from tessera.experiments.runtime_eval.budgets import load_head_list, make_policy_for, policy_params
from tessera.experiments.runtime_eval.items import heldout_corpus, ppl_items, retrieval_items, score_retrieval
from tessera.kvcache import HeadMode
from tessera.paths import REPO_ROOT
from tessera.runtime.sequence import FREE
from tessera.types import ModelSpec
from tests.experiments.conftest import run_cli

SHIPPED = REPO_ROOT / "models" / "tessera-tiny-byte"
SPEC = ModelSpec(name="tiny-test", hf_id="tiny-test", num_layers=4, hidden_size=128, num_heads=4, num_kv_heads=2,
                 head_dim=32, intermediate_size=384, vocab_size=264, num_params=1e6, dtype_bytes=4,
                 max_position=8192)


@pytest.mark.skipif(not (SHIPPED / "config.json").exists(), reason="the shipped model is not trained yet")
def test_quick_run_writes_table_and_figure(tmp_path):
    run_dir = tmp_path / "run"
    args = ["experiment=runtime_accuracy", "backend=runtime", "params.quick=true", "output.progress=false",
            f"hydra.run.dir={run_dir}"]
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "bits_per_byte on tessera-tiny-byte" in proc.stdout
    table = pd.read_parquet(run_dir / "accuracy.parquet")
    assert len(pd.read_csv(run_dir / "accuracy.csv")) == len(table)
    assert set(table["policy"]) == {"full", "quest", "streaming", "head_split", "flexicache", "flexicache_adaptive"}
    assert set(table["budget"]) == {4, 8} and set(table["task"]) == {"kv", "ppl"}
    assert len(table) == 6 * 2 * 2  # policy x budget x task (one context length)
    full = table[table["policy"] == "full"]
    assert (full["bpb_ratio"].dropna() == 1.0).all() and full["bpb_ratio"].notna().any()
    sparse = table[table["policy"] != "full"]
    assert (sparse["restored_tokens"] > 0).all()  # full's prefills were reused, not recomputed
    ppl = table[table["task"] == "ppl"].set_index(["policy", "budget"])["bits_per_byte"]
    assert ppl[("quest", 4)] != ppl[("full", 4)]  # a 4-page budget of 33 pages binds
    assert table.loc[table["task"] == "kv", "digit_accuracy"].between(0, 1).all()
    assert table.loc[table["task"] == "kv", "first_digit_retention"].notna().any() or \
        (table.loc[table["task"] == "kv", "full_first_digit_accuracy"] == 0).all()
    assert (run_dir / "accuracy.png").stat().st_size > 10_000
    assert json.loads((run_dir / "summary.json").read_text())["summary"]["pooled"]
    assert "skipping" in run_cli(args, cwd=tmp_path).stdout


@pytest.mark.parametrize("task", ["needle", "kv", "multikey"])
def test_retrieval_items_decode_every_answer_after_the_prefill(task):
    heldout = heldout_corpus(SHIPPED)
    items = retrieval_items(task, 2048, 3, heldout, bos=256, kv_queries=4)
    for item in items:
        assert len(item.prompt) + len(item.forced) <= 2048 and item.prompt[0] == 256
        assert len(item.prompt) // 16 > 32  # a 32-page budget binds
        assert len(item.answers) == {"needle": 1, "kv": 4, "multikey": 4}[task]
        free = [i for i, t in enumerate(item.forced) if t == FREE]
        assert free == [o + j for o, a in item.answers for j in range(len(a))]
        assert item.forced[0] != FREE  # the first answer token is decoded, not read off the prefill
        truth = list(item.forced)
        for o, a in item.answers:
            truth[o:o + len(a)] = list(a.encode())
        chars = sum(len(a) for _, a in item.answers)
        assert score_retrieval(item, truth) == (len(item.answers), chars, chars, len(item.answers))
        wrong = list(truth)
        wrong[item.answers[0][0]] = ord("x")
        assert score_retrieval(item, wrong) == (len(item.answers) - 1, chars - 1, chars, len(item.answers) - 1)
        wrong[item.answers[0][0]], wrong[item.answers[0][0] + 1] = truth[item.answers[0][0]], ord("x")
        assert score_retrieval(item, wrong)[3] == len(item.answers)  # only later digits wrong: needle found


def test_ppl_items_are_held_out_windows():
    heldout = heldout_corpus(SHIPPED)
    items = ppl_items(256, 32, 4, heldout, bos=256)
    assert [len(i.prompt) for i in items] == [257] * 4 and [len(i.forced) for i in items] == [33] * 4
    assert FREE not in items[0].forced and items[0].params(score=True).logprobs


def test_budget_maps_onto_each_policy():
    assert policy_params("quest", 8) == {"topk_pages": 8}
    assert policy_params("flexicache_adaptive", 16) == {"topk_pages": 16}
    assert policy_params("streaming", 8) == {"sink_tokens": 16, "window_tokens": 112}
    assert policy_params("full", 32) == {}
    for name in ("quest", "streaming", "head_split", "flexicache", "flexicache_adaptive"):
        plan = make_policy_for(name, 8, SPEC).plan
        if name in ("streaming", "head_split"):
            assert plan.sink_pages + plan.window_pages == 8
        else:
            assert plan.topk_pages == 8
    with pytest.raises(ValueError, match="budget"):
        policy_params("quest", 1)


@pytest.mark.parametrize("suffix", [".json", ".tsv", ".csv"])
def test_a_head_list_file_drives_head_split_and_flexicache(tmp_path, suffix):
    heads = [(0, 1), (2, 0), (3, 1)]
    path = tmp_path / f"heads{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"unstable_heads": [list(h) for h in heads]}))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        path.write_text(f"layer{sep}kv_head\n" + "".join(f"{l}{sep}{h}\n" for l, h in heads))
    assert load_head_list(path) == heads
    mask = np.zeros((4, 2), dtype=bool)
    for l, h in heads:
        mask[l, h] = True
    split = make_policy_for("head_split", 8, SPEC, heads).plan
    assert ((np.asarray(split.mode) == HeadMode.FULL) == mask).all()
    flexi = make_policy_for("flexicache", 8, SPEC, heads).plan
    assert ((np.asarray(flexi.mode) == HeadMode.RESIDENT_TOPK) == mask).all()
    with pytest.raises(ValueError, match="outside"):
        make_policy_for("head_split", 8, SPEC, [(9, 0)])


def test_a_retrieval_task_without_an_example_count_is_a_config_error():
    from omegaconf import OmegaConf

    from tessera.experiments.config import ConfigError
    from tessera.experiments.runtime_eval.accuracy import params
    cfg = OmegaConf.create({"params": {"policies": ["full"], "budgets": [8], "tasks": ["needle", "multikey"],
                                       "context_lens": [2048], "num_examples": {"needle": 4}}})
    with pytest.raises(ConfigError, match="params.num_examples"):
        params(cfg)
    cfg.params.num_examples.multikey = 2
    assert params(cfg)["tasks"] == ["needle", "multikey"]


@pytest.mark.skipif(not (SHIPPED / "config.json").exists(), reason="the shipped model is not trained yet")
def test_a_stopped_run_keeps_its_cells_and_resumes(tmp_path):
    """Every finished cell is in cells.jsonl at once; the same command in the folder of a run that did not
    finish reuses them (a marked cell comes back unchanged) and runs the rest; other params are refused."""
    run_dir = tmp_path / "run"
    args = ["experiment=runtime_accuracy", "backend=runtime", "params.quick=true", "params.policies=[quest]",
            "output.progress=false", "output.figures=false", f"hydra.run.dir={run_dir}"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    lines = (run_dir / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 3 * 2  # fingerprint + (full, quest at the quick budgets 4 and 8) x (kv, ppl)
    marked = json.loads(lines[1])
    marked["row"]["seconds"] = 12345.0
    kept = [lines[0], json.dumps(marked)]  # as if stopped after its first cell, mid-way through writing the next
    (run_dir / "cells.jsonl").write_text("\n".join(kept) + "\n" + lines[2][:20] + "\n")
    (run_dir / "summary.json").unlink()
    proc = run_cli(args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(run_dir / "accuracy.parquet")
    assert len(table) == 2 * 2 * 2 and (table["seconds"] == 12345.0).any()  # full is listed at each budget
    (run_dir / "summary.json").unlink()
    other = run_cli([*args[:-1], "params.policies=[streaming]", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert other.returncode == 2 and "cells.jsonl holds cells of other params" in other.stderr
