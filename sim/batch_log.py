"""What a worker's iterations and a host link's copies did: summed always (WorkTotals, for MFU/MBU), one entry each
when kept (BatchLog, TransferLog: output.batch_log), as plain lists turned into frames by sim/records.py."""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from itertools import islice, repeat
from operator import sub

from tessera.interface import BatchShape


@dataclass(slots=True)
class WorkTotals:
    """Counters summed over a worker's iterations (model FLOPs and HBM bytes derive from them)."""

    iterations: int = 0
    prefill_tokens: int = 0
    prefill_attn_pairs: float = 0.0
    decode_seqs: int = 0
    decode_kv_tokens: float = 0.0
    extra_hbm_bytes: float = 0.0
    sampled_tokens: int = 0  # tokens through the LM head: one per sequence of a step (BatchShape.num_seqs)
    # tokens of a step -> iterations with that many: a MoE model's expert reads per step are concave in its tokens,
    # so the mean batch would overcount them (sim/utilization.py)
    batch_tokens: dict[int, int] = field(default_factory=dict)

    def add(self, shape: BatchShape) -> None:
        n = shape.prefill_tokens + shape.decode_seqs
        self.batch_tokens[n] = self.batch_tokens.get(n, 0) + 1
        self.iterations += 1
        self.prefill_tokens += shape.prefill_tokens
        self.prefill_attn_pairs += shape.prefill_attn_pairs
        self.decode_seqs += shape.decode_seqs
        self.decode_kv_tokens += shape.decode_kv_read_tokens
        self.extra_hbm_bytes += shape.extra_hbm_bytes
        self.sampled_tokens += shape.num_seqs

    def add_decode_span(self, steps: int, batch_size: int, kv_tokens: float) -> None:
        """`steps` pure-decode iterations of `batch_size` sequences reading `kv_tokens` KV tokens in all."""
        self.batch_tokens[batch_size] = self.batch_tokens.get(batch_size, 0) + steps
        self.iterations += steps
        self.decode_seqs += steps * batch_size
        self.decode_kv_tokens += kv_tokens
        self.sampled_tokens += steps * batch_size

    @property
    def tokens(self) -> int:
        """Tokens through the model's layers (prefill tokens + one per decode)."""
        return self.prefill_tokens + self.decode_seqs


@dataclass(slots=True)
class BatchLog:
    """One entry per iteration: start time, duration, prefill tokens, decoding sequences, KV tokens read (per
    layer and KV head, summed over the decodes), requests preempted when the batch was formed. Typed arrays (8 bytes
    an entry; a list of floats takes 32) that numpy reads without a conversion per entry."""

    t_s: array = field(default_factory=lambda: array("d"))
    duration_s: array = field(default_factory=lambda: array("d"))
    prefill_tokens: array = field(default_factory=lambda: array("q"))
    decode_seqs: array = field(default_factory=lambda: array("q"))
    kv_tokens_read: array = field(default_factory=lambda: array("d"))
    preemptions: array = field(default_factory=lambda: array("q"))

    def add(self, t_s: float, duration_s: float, shape: BatchShape, preemptions: int) -> None:
        self.t_s.append(t_s)
        self.duration_s.append(duration_s)
        self.prefill_tokens.append(shape.prefill_tokens)
        self.decode_seqs.append(shape.decode_seqs)
        self.kv_tokens_read.append(shape.decode_kv_read_tokens)
        self.preemptions.append(preemptions)

    def add_decode_span(self, start_s: float, ends_s: list[float], batch_size: int, kv_first: float) -> None:
        """Iterations ending at ends_s (the first starts at start_s); the i-th reads kv_first + i * batch_size."""
        starts = [start_s]
        starts += islice(ends_s, len(ends_s) - 1)
        self.t_s.extend(starts)
        self.duration_s.extend(map(sub, ends_s, starts))
        n = len(ends_s)
        self.prefill_tokens.extend(repeat(0, n))
        self.decode_seqs.extend(repeat(batch_size, n))
        if type(kv_first) is int and type(batch_size) is int:
            self.kv_tokens_read.extend(map(float, range(kv_first, kv_first + n * batch_size, batch_size)))
        else:
            self.kv_tokens_read.extend(kv_first + i * batch_size for i in range(n))
        self.preemptions.extend(repeat(0, n))

    def __len__(self) -> int:
        return len(self.t_s)


@dataclass(slots=True)
class TransferLog:
    """One entry per copy on the host link of GPU `gpu`: start time, duration, direction ('h2d'/'d2h'), bytes."""

    gpu: int = 0
    t_s: list[float] = field(default_factory=list)
    duration_s: list[float] = field(default_factory=list)
    direction: list[str] = field(default_factory=list)
    num_bytes: list[float] = field(default_factory=list)

    def add(self, t_s: float, duration_s: float, direction: str, num_bytes: float) -> None:
        self.t_s.append(t_s)
        self.duration_s.append(duration_s)
        self.direction.append(direction)
        self.num_bytes.append(num_bytes)

    def __len__(self) -> int:
        return len(self.t_s)


def enable_batch_log(cluster) -> None:
    """Keep per-iteration and per-copy records in every worker and host link of a Cluster (before its run)."""
    for worker in cluster.workers:
        worker.batch_log = BatchLog()
    for gpu_id, link in cluster.links.items():
        link.log = TransferLog(gpu=gpu_id)
