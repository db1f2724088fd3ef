"""The MoA workload's configuration: datasets, routing skew, answer model and prompt-size assumptions.

Every number that is not a measured fact is a field whose metadata carries "assumption" and why;
`assumptions(config)` lists them so a results table can store them beside the run.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from tessera.models import SYMBOLIC_MOE_AGGREGATORS, SYMBOLIC_MOE_POOL

REASONING_EXPERTS = ("QwenR1", "LlamaR1")  # Symbolic-MoE's two R1-distilled experts
REASONING_MAX_OUTPUT_TOKENS = 32768  # Symbolic-MoE max_tokens for the R1 distills (mosaic.md §1.2)
INSTRUCT_MAX_OUTPUT_TOKENS = 4096  # ... and for every other expert


def _assumed(default: Any, why: str) -> Any:
    """A config field whose default is our assumption, not a sourced number."""
    if isinstance(default, (dict, list, tuple)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"assumption": why})
    return field(default=default, metadata={"assumption": why})


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """One benchmark as the Symbolic-MoE code ships it (mosaic.md §1.2): facts, not assumptions.

    answer_kind: "mcq" (a letter among num_choices) or "integer" (AIME); question_chars is the
    measured mean question length in characters.
    """

    name: str
    num_queries: int
    aggregator: str  # catalog model name
    question_chars: float
    answer_kind: str
    num_choices: int = 0
    categories: tuple[str, ...] = ("general",)


MMLU_PRO_CATEGORIES = ("biology", "business", "chemistry", "computer science", "economics",
                       "engineering", "health", "history", "law", "math", "other", "philosophy",
                       "physics", "psychology")
DATASETS: dict[str, DatasetSpec] = {
    "mmlu_pro": DatasetSpec("mmlu_pro", 2100, SYMBOLIC_MOE_AGGREGATORS["mmlu_pro"], 700, "mcq", 10,
                            MMLU_PRO_CATEGORIES),
    "gpqa": DatasetSpec("gpqa", 198, SYMBOLIC_MOE_AGGREGATORS["gpqa"], 640, "mcq", 4,
                        ("biology", "chemistry", "physics")),
    "aime": DatasetSpec("aime", 30, SYMBOLIC_MOE_AGGREGATORS["aime"], 370, "integer", 0, ("math",)),
    "medmcqa": DatasetSpec("medmcqa", 4183, SYMBOLIC_MOE_AGGREGATORS["medmcqa"], 205, "mcq", 4,
                           ("medicine",)),
}

# ASSUMPTION: accuracy of each expert answering alone, per dataset (probability its parsed answer is
# right). Ballpark of public model-card / leaderboard figures for 7-12B models of early 2025, not
# measured by us and not from MOSAIC; replace with a profiling run's numbers when available.
# Order of columns: mmlu_pro, gpqa, aime, medmcqa.
# fmt: off
_ACCURACY_ROWS = {
    "Llama":        (0.44, 0.30, 0.03, 0.58), "Qwen":      (0.56, 0.36, 0.10, 0.59),
    "Mistral":      (0.44, 0.30, 0.02, 0.55), "Phi":       (0.47, 0.33, 0.03, 0.55),
    "Gemma":        (0.52, 0.35, 0.02, 0.58), "GLM":       (0.48, 0.32, 0.03, 0.55),
    "Exaone":       (0.50, 0.35, 0.07, 0.58), "Granite":   (0.45, 0.32, 0.03, 0.54),
    "QwenMath":     (0.35, 0.30, 0.13, 0.40), "QwenCode":  (0.45, 0.32, 0.07, 0.48),
    "DeepSeekMath": (0.30, 0.27, 0.03, 0.38), "QwenR1":    (0.45, 0.49, 0.55, 0.42),
    "LlamaR1":      (0.50, 0.49, 0.50, 0.55), "InternLM":  (0.57, 0.37, 0.10, 0.58),
    "Mathstral":    (0.40, 0.30, 0.03, 0.48), "BioLlama":  (0.38, 0.28, 0.02, 0.62),
}
# fmt: on
DEFAULT_ACCURACY: dict[str, dict[str, float]] = {
    dataset: {SYMBOLIC_MOE_POOL[short]: row[i] for short, row in _ACCURACY_ROWS.items()}
    for i, dataset in enumerate(("mmlu_pro", "gpqa", "aime", "medmcqa"))
}


@dataclass(frozen=True)
class MoAConfig:
    """Knobs of the MoA workload generator; fields with metadata 'assumption' are ours.

    routing_weights[dataset][expert]: unnormalised routing probability (None: accuracy **
    routing_sharpness, Symbolic-MoE's strength^(1/T) with T = 0.5); then, if reasoning_share is
    set, the two reasoning experts are rescaled to receive that share of the dataset's prompts.
    Length specs use tessera.workload.spec's mapping form ({kind: sharegpt, ...}).
    """

    datasets: tuple[str, ...] = ("mmlu_pro",)
    num_queries: Mapping[str, int] | None = None  # per dataset; None: the DatasetSpec counts
    experts_per_query: int = 3  # Symbolic-MoE: k = 3, sampled with replacement
    routing_weights: Mapping[str, Mapping[str, float]] | None = None
    routing_sharpness: float = 2.0  # Symbolic-MoE: strength ** (1 / T), T = 0.5
    reasoning_share: float | None = _assumed(
        1 / 3, "issue 3: the two reasoning experts receive about a third of all prompts")
    accuracy: Mapping[str, Mapping[str, float]] = _assumed(
        DEFAULT_ACCURACY, "ballpark of public leaderboard numbers, see _ACCURACY_ROWS")
    error_correlation: float = _assumed(
        0.5, "latent correlation of two experts' errors on one query (shared difficulty)")
    distractor_prob: float = _assumed(
        0.5, "a wrong expert picks the query's most attractive wrong answer with this chance")
    unparseable_prob: float = _assumed(
        0.02, "an answer without a parsable final answer; truncated outputs are always unparsable")
    aggregator_follows_majority: float = _assumed(
        0.85, "the aggregator returns the experts' strict-majority answer with this chance, "
              "else solves alone at its own accuracy")
    chars_per_token: float = _assumed(4.0, "English BPE rule of thumb (~4 characters per token)")
    question_length_sigma: float = _assumed(
        0.5, "log-normal spread of question length around the dataset mean")
    expert_instruction_tokens: int = _assumed(
        40, "Symbolic-MoE's CoT instruction + 'The answer is (X)' format line")
    aggregator_instruction_tokens: int = _assumed(
        110, "MoA aggregate-and-synthesise system prompt + answer-format line")
    response_header_tokens: int = _assumed(8, "\"Model i's response:\" heading per expert answer")
    strip_reasoning: bool = True  # Symbolic-MoE drops the text before </think> (mosaic.md §1.2)
    reasoning_lengths: Mapping[str, Any] = _assumed(
        {"kind": "servegen_r1", "max_output_tokens": REASONING_MAX_OUTPUT_TOKENS},
        "production DeepSeek-R1 lengths (ServeGen) stand in for the R1 distills on these benchmarks")
    instruct_lengths: Mapping[str, Any] = _assumed(
        {"kind": "sharegpt"}, "ShareGPT output lengths stand in for instruct CoT answers")

    def __post_init__(self) -> None:
        for name in self.datasets:
            if name not in DATASETS:
                raise ValueError(f"moa.datasets: unknown dataset {name!r}; allowed: "
                                 f"{', '.join(DATASETS)}")
        checks = [
            ("experts_per_query", self.experts_per_query >= 1, "a whole number >= 1, e.g. 3"),
            ("routing_sharpness", self.routing_sharpness > 0, "a positive exponent, e.g. 2"),
            ("reasoning_share", self.reasoning_share is None or 0 < self.reasoning_share < 1,
             "a fraction in (0, 1) or None for the raw routing weights"),
            ("error_correlation", 0 <= self.error_correlation < 1, "a value in [0, 1)"),
            ("distractor_prob", 0 <= self.distractor_prob <= 1, "a probability in [0, 1]"),
            ("unparseable_prob", 0 <= self.unparseable_prob < 1, "a probability in [0, 1)"),
            ("aggregator_follows_majority", 0 <= self.aggregator_follows_majority <= 1,
             "a probability in [0, 1]"),
            ("chars_per_token", self.chars_per_token > 0, "a positive number, e.g. 4.0"),
            ("question_length_sigma", self.question_length_sigma >= 0, "a value >= 0"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"moa.{name}={getattr(self, name)!r} is invalid: use {allowed}")
        for name, value in (self.num_queries or {}).items():
            if name not in DATASETS or not (isinstance(value, int) and value >= 1):
                raise ValueError(f"moa.num_queries[{name!r}]={value!r} is invalid: use a known "
                                 f"dataset ({', '.join(DATASETS)}) and a whole number >= 1")
        for dataset in self.datasets:
            table = self.accuracy.get(dataset, {})
            for expert, value in table.items():
                if not 0 <= value <= 1:
                    raise ValueError(f"moa.accuracy[{dataset!r}][{expert!r}]={value} is invalid: "
                                     f"use a probability in [0, 1]")

    def query_count(self, dataset: str) -> int:
        return (self.num_queries or {}).get(dataset, DATASETS[dataset].num_queries)


def assumptions(config: MoAConfig) -> dict[str, tuple[Any, str]]:
    """Field name -> (value, why) for every field labelled as an assumption."""
    return {f.name: (getattr(config, f.name), f.metadata["assumption"])
            for f in fields(config) if "assumption" in f.metadata}
