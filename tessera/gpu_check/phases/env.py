"""Phase env: what the node has (Python, torch, CUDA, Triton, GPU, driver, link), and the gate: torch or
Triton older than the supported minimum, missing dependencies or repository files fail it.

Also proves the basics every later phase needs: pinned host memory round trip and one Triton kernel
compiled and run (in the interpreter under --device cpu).
"""
from __future__ import annotations

import importlib.metadata
import shutil
import subprocess

import torch
import triton
import triton.language as tl

from tessera.gpu_check.requirements import node_requirements, requirement_name
from tessera.gpu_check.result import Recorder
from tessera.gpu_check.versions import python_version, version_problems
from tessera.paths import REPO_ROOT

REPO_FILES = ("models/tessera-tiny-byte/config.json", "models/tessera-tiny-byte/model.safetensors",
              "tests/kernels/pools.py", "benchmarks/kernels.py")


@triton.jit
def _add_one(x_ptr, n, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tl.store(x_ptr + i, tl.load(x_ptr + i, mask=i < n) + 1, mask=i < n)


def versions() -> dict[str, str]:
    out = {"python": python_version(), "torch": torch.__version__, "torch_cuda": str(torch.version.cuda),
           "triton": triton.__version__}
    for req in node_requirements():
        name = requirement_name(req)
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "MISSING"
    return out


def gpu_facts() -> dict[str, str]:
    props = torch.cuda.get_device_properties(0)
    facts = {"gpu": props.name, "capability": f"sm_{props.major}{props.minor}", "sms": str(props.multi_processor_count),
             "memory_gib": f"{props.total_memory / 2**30:.1f}", "device_count": str(torch.cuda.device_count())}
    if shutil.which("nvidia-smi"):
        query = "driver_version,pcie.link.gen.current,pcie.link.width.current,power.limit"
        try:
            line = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader", "-i", "0"],
                                  capture_output=True, text=True, timeout=20).stdout.strip()
            facts.update(zip(("driver", "pcie_gen", "pcie_width", "power_limit"), (s.strip() for s in line.split(","))))
        except (OSError, subprocess.SubprocessError) as err:
            facts["nvidia_smi"] = f"failed: {err}"
    return facts


def run(rec: Recorder, device: str) -> None:
    found = versions()
    rec.info("versions", {k: found[k] for k in ("python", "torch", "torch_cuda", "triton")})
    rec.table("installed runtime dependencies (pins: requirements/gpu-node.txt)",
              [{"package": requirement_name(r), "pinned": r.split("==")[-1] if "==" in r else r,
                "installed": found[requirement_name(r)]} for r in node_requirements()])
    problems = version_problems(found["python"], torch.__version__, triton.__version__)
    rec.check("torch / Triton / Python supported", not problems,
              f"python {found['python']}, torch {torch.__version__}, triton {triton.__version__}", "; ".join(problems))
    missing = [k for k, v in found.items() if v == "MISSING"]
    rec.check("runtime dependencies installed", not missing, f"{len(found) - 4} packages",
              f"missing: {', '.join(missing)} (pip install --no-index --find-links wheelhouse "
              "-r requirements/gpu-node.txt)" if missing else "")
    absent = [f for f in REPO_FILES if not (REPO_ROOT / f).exists()]
    rec.check("repository files present", not absent, str(REPO_ROOT), f"missing: {', '.join(absent)}" if absent else "")
    smollm2 = REPO_ROOT / "models" / "smollm2-135m-instruct" / "config.json"
    rec.info("smollm2", smollm2.exists())
    if not smollm2.exists():
        rec.skip("models/smollm2-135m-instruct", "not built here (`make smollm2` needs PyPI); engine checks use "
                                                 "the tiny model only")
    if device == "cpu":
        rec.skip("CUDA device, pinned memory", "--device cpu")
        x = torch.zeros(100)
        _add_one[(1,)](x, 100, BLOCK=128)
        rec.check("Triton smoke kernel (interpreter)", bool((x == 1).all()), "100 elements + 1")
        return
    hint = "" if torch.cuda.is_available() else "no CUDA device visible to torch (driver? CUDA_VISIBLE_DEVICES?)"
    if not rec.check("CUDA available", torch.cuda.is_available(), "torch.cuda.is_available()", hint):
        return
    facts = gpu_facts()
    rec.info("versions", {**rec.result.info["versions"], **{k: facts[k] for k in ("gpu", "capability") if k in facts},
                          **({"driver": facts["driver"]} if "driver" in facts else {})})
    rec.table("GPU", [facts])
    host = torch.arange(1 << 20, dtype=torch.float32).pin_memory()
    back = torch.empty_like(host).pin_memory()
    back.copy_(host.to("cuda", non_blocking=True) * 2, non_blocking=True)
    torch.cuda.synchronize()
    rec.check("pinned host memory round trip", host.is_pinned() and torch.equal(back, host * 2), "4 MiB H2D + D2H")
    x = torch.zeros(1000, device="cuda")
    _add_one[(triton.cdiv(1000, 256),)](x, 1000, BLOCK=256)
    torch.cuda.synchronize()
    rec.check("Triton smoke kernel compiles and runs", bool((x == 1).all()), f"triton {triton.__version__}")
