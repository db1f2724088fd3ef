"""Input tessera-convert refuses: one ConversionError (a ValueError) naming the file, the field and the
fix; from the CLI one line on stderr and exit status 2, never a traceback; no output folder left behind.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tessera.runtime.convert import ConversionError, convert_gguf
from tessera.runtime.convert.cli import main
from tests.runtime.convert.tiny_gguf import Q, TinySpec, write_tiny_gguf


def refused(tmp_path, spec_or_path, match):
    path = spec_or_path if isinstance(spec_or_path, Path) else write_tiny_gguf(tmp_path / "bad.gguf", spec_or_path)
    with pytest.raises(ConversionError, match=match) as info:
        convert_gguf(path, tmp_path / "out", progress=False)
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial"))
    return str(info.value)


def test_unsupported_architecture(tmp_path):
    message = refused(tmp_path, TinySpec(arch="qwen2"),
                      r"bad\.gguf: general\.architecture='qwen2' is not supported; tessera-convert converts only \['llama'\]")
    assert "the dense Llama family" in message


def test_mixture_of_experts(tmp_path):
    refused(tmp_path, TinySpec(metadata={"{arch}.expert_count": 8}), r"llama\.expert_count=8: mixture-of-experts")


@pytest.mark.parametrize("qtype", [Q.Q8_1, Q.Q8_K])
def test_quant_type_gguf_cannot_dequantize(tmp_path, qtype):
    refused(tmp_path, TinySpec(types={"blk.1.ffn_down": qtype}),  # rows of 256: whole Q8_K blocks
            rf"tensor blk\.1\.ffn_down\.weight has type {qtype.name}, which gguf [\d.]+ cannot dequantize; re-quantize")


def test_unknown_tensor_name(tmp_path):
    extra = {"blk.0.attn_q.bias": np.zeros(64, np.float32)}
    refused(tmp_path, TinySpec(extra_tensors=extra),
            r"tensor 'blk\.0\.attn_q\.bias' is not part of a dense Llama with 2 layers")


def test_layer_beyond_block_count(tmp_path):
    refused(tmp_path, TinySpec(extra_tensors={"blk.2.attn_norm.weight": np.ones(64, np.float32)}),
            r"tensor 'blk\.2\.attn_norm\.weight' is not part of a dense Llama with 2 layers")


@pytest.mark.parametrize("keep", [0.6, 200])  # inside the tensor data; inside the metadata
def test_truncated_file(tmp_path, keep):
    path = write_tiny_gguf(tmp_path / "bad.gguf", TinySpec())
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep) if keep < 1 else keep])
    refused(tmp_path, path, r"bad\.gguf: cannot parse the GGUF \(\w+: .*\); the file is truncated or corrupt, download")


def test_not_a_gguf_and_missing_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    refused(tmp_path, tmp_path / "model.safetensors", r"not a GGUF file \(starts with b'\\x08\\x00\\x00\\x00'")
    refused(tmp_path, tmp_path / "absent.gguf", r"absent\.gguf: no such file")
    (tmp_path / "empty.gguf").write_bytes(b"")
    refused(tmp_path, tmp_path / "empty.gguf", r"not a GGUF file \(starts with b''")


@pytest.mark.parametrize("metadata,match", [
    ({"{arch}.rope.scaling.type": "longrope", "{arch}.rope.scaling.factor": 4.0},
     r"llama\.rope\.scaling\.type='longrope' is not supported"),
    ({"{arch}.rope.scaling.type": "yarn", "{arch}.rope.scaling.factor": 4.0,
      "{arch}.rope.scaling.yarn_log_multiplier": 0.1},
     r"llama\.rope\.scaling\.yarn_log_multiplier not understood with yarn scaling"),
    ({"{arch}.rope.scaling.type": "linear"}, r"llama\.rope\.scaling\.factor is missing"),
])
def test_rope_scaling_not_understood(tmp_path, metadata, match):
    refused(tmp_path, TinySpec(metadata=metadata), match)


def test_rope_freqs_that_are_not_llama3(tmp_path):
    refused(tmp_path, TinySpec(rope_freqs=np.linspace(1, 3, 8)),
            r"rope_freqs\.weight holds RoPE frequency factors that match no Llama-3 scaling")


def test_non_empty_output_folder_needs_force(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ConversionError, match=r"--out \S+out exists and is not empty; pass --force"):
        convert_gguf(path, tmp_path / "out", progress=False)
    convert_gguf(path, tmp_path / "out", force=True, progress=False)
    assert (tmp_path / "out" / "keep.txt").exists() and (tmp_path / "out" / "config.json").exists()


@pytest.mark.parametrize("case", ["arch", "missing", "not-gguf", "exists", "shard-size"])
def test_cli_refusals_exit_2_with_one_line(tmp_path, capsys, case):
    path = tmp_path / "bad.gguf"
    args = [str(path), "--out", str(tmp_path / "out")]
    if case == "arch":
        write_tiny_gguf(path, TinySpec(arch="qwen2"))
    elif case == "not-gguf":
        path.write_text("hello")
    elif case == "exists":
        write_tiny_gguf(path, TinySpec())
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "x").write_text("x")
    elif case == "shard-size":
        write_tiny_gguf(path, TinySpec())
        args += ["--max-shard-size", "lots"]
    with pytest.raises(SystemExit) if case == "shard-size" else _no_exit() as info:
        code = main(args)
    code = info.value.code if case == "shard-size" else code
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    if case == "shard-size":  # argparse's own usage error
        assert "--max-shard-size: size 'lots' is not understood" in err
    else:
        named = str(tmp_path / "out") if case == "exists" else str(path)
        assert err.count("\n") == 1 and err.startswith("tessera-convert: error: ") and named in err


def test_cli_converts_and_refuses_in_a_subprocess(tmp_path):
    """The real entry points: `python -m tessera.runtime.convert` and the tessera-convert script."""
    good = write_tiny_gguf(tmp_path / "tiny.gguf", TinySpec())
    bad = write_tiny_gguf(tmp_path / "bad.gguf", TinySpec(arch="qwen2"))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "tessera.runtime.convert", str(good), "--out", str(tmp_path / "hf"),
                          "--quiet"], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"wrote {tmp_path / 'hf'}: 2 layers, hidden 64")
    script = Path(sys.executable).with_name("tessera-convert")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "tessera.runtime.convert"]
    run = subprocess.run([*command, str(bad), "--out", str(tmp_path / "x")], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("tessera-convert: error: ") and run.stderr.count("\n") == 1, run.stderr
    assert "general.architecture='qwen2' is not supported" in run.stderr and "Traceback" not in run.stderr


class _no_exit:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
