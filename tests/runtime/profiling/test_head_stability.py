"""Head-stability profiling from the runtime: the recorder's decode path equals the plain forward, its
top-K sets are valid and ranked by real attention mass, a recorded trace replays through the simulator's
TopKSource seam, the analysis finds a planted unstable class, and the CLI writes a list both backends read."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tessera.kvcache import TraceTopK, make_policy
from tessera.kvcache import head_lists
from tessera.kvcache.head_lists import checkpoint_unstable_heads, load_unstable_heads, save_unstable_heads
from tessera.kvcache.head_model import HeadModel, HeadModelParams
from tessera.kvcache.head_plan import HeadMode
from tessera.runtime.checkpoint import save_checkpoint
from tessera.runtime.config import ModelConfig
from tessera.runtime.engine import model_spec
from tessera.runtime.model import Transformer
from tessera.runtime.profiling.head_stability import ProfileSettings, head_table, main
from tessera.runtime.profiling.record import RecordedSteps, _page_sums, record_topk


@pytest.fixture(scope="module")
def tiny():
    config = ModelConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=63)
    model = Transformer(config)
    model.init_weights(seed=0, std=0.2)
    return model.eval()


def tokens(n, seed=0):
    return torch.randint(0, 63, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_decode_path_matches_the_plain_forward(tiny):
    seq = tokens(200)
    rec = record_topk(tiny, seq, prompt_len=150, k=4, prefill_chunk=64)  # chunked prefill + 50 decode steps
    with torch.no_grad():
        logp = F.log_softmax(tiny(torch.tensor([seq]))[0].float(), -1)
    ref = -logp[149:199].gather(1, torch.tensor(seq[150:200])[:, None]).mean().item() / math.log(2)
    assert rec.nll_bits == pytest.approx(ref, rel=1e-4)


def test_sets_are_valid_and_attention_topk_holds_the_most_mass(tiny):
    rec = record_topk(tiny, tokens(260, seed=1), prompt_len=200, k=4)
    sets = rec.attention.topk  # [steps, L, H, K]
    assert sets.shape == (60, 2, 2, 4)
    pages = rec.attention.num_pages
    for t in range(60):
        for s in (rec.attention.topk[t], rec.minmax.topk[t]):
            assert (s[..., 0] == pages[t] - 1).all()  # the current page is forced in, first
            assert ((s >= 0) & (s < pages[t])).all()
            assert all(len(set(row)) == 4 for row in s.reshape(-1, 4).tolist())
    attn, mm = rec.mass_captured[..., 0], rec.mass_captured[..., 1]
    assert (attn >= mm - 1e-6).all() and (attn <= 1 + 1e-6).all()
    assert (attn > mm + 1e-3).any()  # MinMax is only a bound: it misses mass somewhere


def test_page_sums_handle_a_partial_last_page():
    per_token = torch.arange(1.0, 36.0)[None]  # 35 tokens: pages of 16, 16, 3
    assert _page_sums(per_token, 3, 16).tolist() == [[136.0, 392.0, 102.0]]


def test_recorded_trace_replays_through_the_simulators_topk_seam(tiny, tmp_path):
    rec = record_topk(tiny, tokens(240, seed=2), prompt_len=160, k=4)
    rec.attention.save(tmp_path / "t.npz")
    trace = type(rec.attention).load(tmp_path / "t.npz")
    spec = model_spec(tiny, "tiny-profiled")
    policy = make_policy("flexicache", spec, topk_pages=4, rerank_interval=4, unstable_heads=((0, 0),))
    rk = policy.new_request(0, 160, TraceTopK(trace))
    rk.on_prefill_done()
    for n in range(1, 81):
        rk.on_decode_step()
        if n == 1 or n % 4 == 0:
            for l, h in [(0, 1), (1, 0), (1, 1)]:  # the offloaded (stable) heads
                assert set(rk.topk_pages(l, h)) == set(trace.topk[n - 1, l, h])
        if rk.is_reloading:
            rk.on_reload_done()


def test_analysis_finds_a_planted_unstable_class():
    planted = ((0, 1), (2, 3))
    hm = HeadModel(HeadModelParams(head_spread=0.1, task_spread=0.1), 3, 4, planted, seed=0)
    recorded = []
    for r in range(3):
        tr = hm.simulate_trace(r, 1000, 64, 8)
        recorded.append(RecordedSteps(tr, tr, np.ones(tr.topk.shape[:3] + (2,), np.float32), 1.0))
    table, summary = head_table(recorded, ProfileSettings(k=8, steps=64, samples=3, fraction=2 / 12))
    assert sorted(map(tuple, summary["unstable_heads"])) == list(planted)
    assert table.loc[table["unstable"], "ts_mean"].max() < table.loc[~table["unstable"], "ts_mean"].min()
    assert summary["split"]["gap_at_cut"] > 0.2


def test_head_list_files_round_trip_and_are_found_by_model_name(tmp_path, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    with pytest.raises(KeyError, match="head_stability"):
        checkpoint_unstable_heads(folder)
    save_unstable_heads(folder / "head_stability.tsv", [(1, 1), (0, 2)])
    assert load_unstable_heads(folder / "head_stability.tsv") == ((0, 2), (1, 1))
    assert checkpoint_unstable_heads(folder) == ((0, 2), (1, 1))
    monkeypatch.setattr(head_lists, "MODELS_DIR", tmp_path)
    assert head_lists.shipped_unstable_heads("my-model") == ((0, 2), (1, 1))
    with pytest.raises(KeyError, match="synthetic"):
        head_lists.shipped_unstable_heads("other-model")


def test_cli_writes_a_list_the_policy_uses(tiny, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from tessera.runtime.train.corpus import DEFAULT_STDLIB
    if not Path(DEFAULT_STDLIB).exists():
        pytest.skip("no held-out stdlib text on this machine")
    ckpt = tmp_path / "tiny-ckpt"
    model = Transformer(ModelConfig(vocab_size=264, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, bos_token_id=256))
    model.init_weights(seed=1, std=0.2)
    save_checkpoint(model, ckpt)
    out = tmp_path / "out"
    main(["--model", str(ckpt), "--out", str(out), "--context", "256", "--steps", "48", "--k", "4",
          "--samples", "2", "--write-to-checkpoint"])
    for name in ("head_stability.tsv", "head_stability.csv", "head_stability.json", "head_stability.png"):
        assert (out / name).exists(), name
    assert len(list((out / "traces").glob("*.npz"))) == 4
    heads = checkpoint_unstable_heads(ckpt)
    assert len(heads) == 1  # 25% of 2 layers x 2 KV heads
    monkeypatch.setattr(head_lists, "MODELS_DIR", tmp_path)
    spec = model_spec(model, "tiny-ckpt")
    plan = make_policy("flexicache", spec, topk_pages=4, unstable_source="shipped").plan
    assert [tuple(p) for p in np.argwhere(plan.mode == HeadMode.RESIDENT_TOPK)] == list(heads)


class ReplayHeads:
    """What the simulator asks of its head model (sim/kv_manager.py): a TopKSource per request."""

    def __init__(self, trace):
        self.trace, self.requests = trace, []

    def behaviour(self, request_id):
        self.requests.append(request_id)
        return TraceTopK(self.trace)


def test_the_simulator_replays_a_recorded_trace(tiny, monkeypatch):
    from dataclasses import replace

    from tessera.experiments.backends.sim import run_sim
    from tessera.experiments.calibrate_runtime import run_spec
    from tessera.scheduling import SchedulerConfig
    from tessera.sim import cluster
    from tessera.sim.kv_setup import KVSetup
    from tessera.types import GPUSpec, Request

    rec = record_topk(tiny, tokens(260, seed=3), prompt_len=200, k=4)
    replay = ReplayHeads(rec.attention)
    monkeypatch.setattr(cluster, "truth_head_model", lambda model: replay)
    spec_model = model_spec(tiny, "tiny-profiled")
    gpu = GPUSpec("cpu-test", 8e9, 10e9, 50e9, "PCIe-Gen4-x16", "PCIe-Gen4-x16")
    kv = KVSetup.from_conf({"name": "flexicache", "topk_pages": 4, "rerank_interval": 4,
                            "unstable_heads": [[1, 0]], "host_kv_gib": 1})
    spec = replace(run_spec(spec_model, gpu, SchedulerConfig(block_size=16), 2**26, None),
                   cost_kind="roofline", kv=kv)
    ok = [Request(i, 0.01 * i, 200, 60) for i in range(3)]
    result = run_sim(spec, ok)
    assert (result.requests["status"] == "finished").all() and sorted(replay.requests) == [0, 1, 2]
    assert result.kv["pcie_h2d_bytes"] > 0  # the recorded sets changed between reranks: pages came back
    with pytest.raises(ValueError, match="record a longer trace"):
        run_sim(spec, [Request(0, 0.0, 200, 80)])  # 80 decode steps, the trace holds 60


def test_cli_profiles_a_bpe_checkpoint_in_its_own_tokens(tmp_path):
    pytest.importorskip("matplotlib")
    from tessera.runtime.profiling import heatmap
    from tessera.runtime.train.corpus import DEFAULT_STDLIB
    from tests.runtime.profiling.tiny_bpe import save_tiny_bpe_checkpoint
    if not Path(DEFAULT_STDLIB).exists():
        pytest.skip("no held-out stdlib text on this machine")
    ckpt, out = tmp_path / "bpe-ckpt", tmp_path / "out"
    save_tiny_bpe_checkpoint(ckpt)
    main(["--model", str(ckpt), "--out", str(out), "--context", "256", "--steps", "48", "--k", "4",
          "--samples", "2", "--also-k", "2", "--no-traces"])
    summary = json.loads((out / "head_stability.json").read_text())
    assert summary["tokens"]["tokenizer"] == "HFTokenizer" and summary["tokens"]["prefix"] == []
    assert summary["nll_bits_per_token"] > 0 and not (out / "traces").exists()
    assert len(summary["unstable_heads"]) == 1 and set(summary["other_k"]) == {"2"}
    heatmap.main(["--dir", str(out)])
    assert (out / "head_heatmap.png").stat().st_size > 0


SMOLLM2_SHAPE = dict(num_layers=30, hidden_size=576, num_heads=9, num_kv_heads=3, head_dim=64,
                     intermediate_size=1536, vocab_size=49152, num_params=1.35e8)


def test_smollm2s_profiled_list_is_found_by_both_names_and_used_by_both_backends():
    from tessera.runtime.engine import build_policy
    from tessera.sim.kv_setup import KVSetup
    from tessera.types import ModelSpec

    shipped = load_unstable_heads(Path(head_lists.data_dir()) / "smollm2-head-stability" / "head_stability.tsv")
    assert len(shipped) == 23 and all(0 <= l < 30 and 0 <= h < 3 for l, h in shipped)  # ceil(25% of 90)
    for name in ("SmolLM2-135M-Instruct", "smollm2-135m-instruct"):  # simulator, runtime (folder) names
        assert head_lists.shipped_unstable_heads(name) == shipped
        assert "data/smollm2-head-stability" in head_lists.unstable_list_source(name)
    sim_spec = ModelSpec(name="SmolLM2-135M-Instruct", hf_id="HuggingFaceTB/SmolLM2-135M-Instruct", **SMOLLM2_SHAPE)
    runtime_spec = ModelSpec(name="smollm2-135m-instruct", hf_id="smollm2-135m-instruct", **SMOLLM2_SHAPE)
    plans = [KVSetup.from_conf({"name": "flexicache", "topk_pages": 8}).policy_for(sim_spec).plan,
             build_policy("flexicache", runtime_spec, {"topk_pages": 8}).plan]
    for plan in plans:
        assert [tuple(p) for p in np.argwhere(plan.mode == HeadMode.RESIDENT_TOPK)] == list(shipped)


def test_a_missing_data_profile_falls_back_like_an_unprofiled_model(tmp_path, monkeypatch):
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(head_lists, "MODELS_DIR", tmp_path)
    with pytest.raises(KeyError, match="synthetic"):
        head_lists.shipped_unstable_heads("smollm2-135m-instruct")
