"""The table a sweep ends with: the varied values in numeric order where they are numbers, and each run's headline
numbers, a capacity search's capacity among them."""
import json

from tessera.experiments.sweep_table import sweep_table


def write_run(folder, overrides: list[str], summary: dict) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"metadata": {"overrides": overrides}, "summary": summary}))


def test_numeric_values_sort_as_numbers_and_a_capacity_is_a_headline(tmp_path):
    for i, (seqs, capacity) in enumerate([(16, 1.5), (256, 4.0), (64, 3.25)]):
        write_run(tmp_path / str(i), ["experiment=capacity_search", f"engine.max_num_seqs={seqs}"],
                  {"capacity_rate_per_s": capacity, "num_probes": 7})
    table = sweep_table(tmp_path)
    assert table["engine.max_num_seqs"].tolist() == ["16", "64", "256"]  # was 16, 256, 64 (sorted as text)
    assert table["capacity (req/s)"].tolist() == [1.5, 3.25, 4.0]


def test_text_values_sort_as_text(tmp_path):
    for i, name in enumerate(["vllm_v1", "orca", "sarathi"]):
        write_run(tmp_path / str(i), [f"engine.scheduler={name}"], {"num_finished": 10 + i})
    table = sweep_table(tmp_path)
    assert table["engine.scheduler"].tolist() == ["orca", "sarathi", "vllm_v1"]
    assert table["finished"].tolist() == [11, 12, 10]


def test_a_run_without_the_value_sorts_last_and_mixed_values_as_text(tmp_path):
    for i, seqs in enumerate([256, None, 16, 64]):
        write_run(tmp_path / str(i), ["experiment=capacity_search"] + ([f"engine.max_num_seqs={seqs}"] if seqs else []),
                  {"capacity_rate_per_s": float(i)})
    assert sweep_table(tmp_path)["capacity (req/s)"].tolist() == [2.0, 3.0, 0.0, 1.0]
    for i, value in enumerate(["9", "abc", "10"]):
        write_run(tmp_path / "mixed" / str(i), [f"workload.name={value}"], {"num_finished": i})
    assert sweep_table(tmp_path / "mixed")["workload.name"].tolist() == ["10", "9", "abc"]  # as text: not all numbers
