"""Choose how the student trains on this machine (QLoRA NF4, LoRA fp32 or bf16) and describe the hardware."""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import resource
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from models.errors import ConfigError

Mode = Literal["qlora-nf4", "lora-fp32", "lora-bf16"]


@dataclass(frozen=True)
class TrainingPlan:
    """How the student is loaded and trained: mode, torch device, compute dtype, and a human reason."""

    mode: Mode
    device: str
    compute_dtype: str  # "float32" or "bfloat16"
    reason: str

    def to_dict(self) -> dict[str, str]:
        """Plain dict (stored on the run)."""
        return asdict(self)


def _cuda() -> tuple[bool, str, bool]:
    """(available, device name, bf16 supported)."""
    import torch

    if not torch.cuda.is_available():
        return False, "", False
    return True, torch.cuda.get_device_name(0), bool(torch.cuda.is_bf16_supported())


@functools.cache
def gpu_present() -> bool:
    """Whether an NVIDIA GPU answers here: `nvidia-smi` exits 0, or torch sees CUDA (a CPU torch build does not)."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            if subprocess.run([smi], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10).returncode == 0:
                return True
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken torch install is no evidence of a GPU
        return False


OFFLOAD_FIX = ("reinstall llama-cpp-python with CUDA: CMAKE_ARGS=-DGGML_CUDA=on pip install --force-reinstall "
               "--no-binary llama-cpp-python --no-cache-dir llama-cpp-python (or `make setup`)")


def offload_warning(gpu: bool, offload_supported: bool) -> str | None:
    """The warning to show when a GPU is present but llama.cpp cannot offload to it (a CPU-only build), else None."""
    if gpu and not offload_supported:
        return f"WARNING: GPU present but this llama.cpp build cannot offload; the teacher runs on the CPU. Fix: {OFFLOAD_FIX}"
    return None


def llama_gpu_offload() -> bool:
    """Whether this llama-cpp-python build can offload layers to a GPU (asked in a fresh process: see fresh_process)."""
    from models.fresh_process import in_fresh_process

    return in_fresh_process("asking llama.cpp whether it can offload", _llama_gpu_offload_here)


def _llama_gpu_offload_here() -> bool:
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def bitsandbytes_available() -> bool:
    """Whether bitsandbytes imports (it does without CUDA since 0.45)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # an import of a broken native build raises more than ImportError
        return False
    return True


def plan_training(quantization: str) -> TrainingPlan:
    """Pick the training mode for `student.quantization` ('auto', 'nf4' or 'none') on this machine."""
    if quantization not in ("auto", "nf4", "none"):
        raise ConfigError(f"student.quantization: {quantization!r} is not one of 'auto', 'nf4', 'none'")
    cuda, name, bf16 = _cuda()
    cores = os.cpu_count() or 1
    gpu_dtype = "bfloat16" if bf16 else "float32"
    if quantization in ("auto", "nf4") and cuda:
        if bitsandbytes_available():
            return TrainingPlan(
                "qlora-nf4",
                "cuda",
                gpu_dtype,
                f"CUDA GPU ({name}) and bitsandbytes found: QLoRA, base weights in 4-bit NF4, {gpu_dtype} compute.",
            )
        if quantization == "nf4":
            raise ConfigError("student.quantization = 'nf4' needs bitsandbytes, which does not import here; use 'none' or install it")
        return _gpu_lora(name, bf16, "bitsandbytes does not import, so no QLoRA: LoRA")
    if quantization == "nf4":
        if not bitsandbytes_available():
            raise ConfigError("student.quantization = 'nf4' needs bitsandbytes, which does not import here; use 'none' or install it")
        return TrainingPlan(
            "qlora-nf4",
            "cpu",
            "float32",
            f"NF4 asked for without a CUDA GPU: QLoRA on the CPU ({cores} cores) through bitsandbytes with fp32 compute; "
            "it saves memory but is no faster than LoRA on a CPU.",
        )
    if cuda:  # quantization == "none"
        return _gpu_lora(name, bf16, "student.quantization = 'none': LoRA")
    why = "student.quantization = 'none'" if quantization == "none" else "no CUDA GPU"
    return TrainingPlan(
        "lora-fp32", "cpu", "float32", f"{why}: LoRA in fp32 on the CPU ({cores} cores); bf16 is not used on CPUs."
    )


def _gpu_lora(name: str, bf16: bool, lead: str) -> TrainingPlan:
    """LoRA on the GPU, base weights in bf16 when the GPU supports it."""
    if bf16:
        return TrainingPlan("lora-bf16", "cuda", "bfloat16", f"{lead} on the GPU ({name}), base weights in bf16.")
    return TrainingPlan("lora-fp32", "cuda", "float32", f"{lead} on the GPU ({name}) in fp32 (no bf16 support).")


def device_info() -> dict[str, Any]:
    """What the run was computed on: CPU, RAM, library versions, GPU name and memory if any."""
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "ram_gb": _ram_gb(),
        "cuda": torch.cuda.is_available(),
    }
    for lib in ("transformers", "peft", "bitsandbytes"):
        try:
            info[lib] = __import__(lib).__version__
        except Exception:
            info[lib] = None
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["cuda_name"] = props.name
        info["cuda_vram_gb"] = round(props.total_memory / 2**30, 1)
        info["cuda_bf16"] = bool(torch.cuda.is_bf16_supported())
        info["cuda_version"] = torch.version.cuda
    return info


def _ram_gb() -> float | None:
    """Total physical memory in GiB (Linux/macOS), None when unknown."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def reset_peak_rss() -> None:
    """Hand freed heap back to the OS, then reset the resident-set high-water mark (Linux ≥ 4.0; a no-op elsewhere)."""
    try:
        # glibc keeps freed blocks mapped; without a trim the "peak" of this phase starts at the last phase's peak.
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB since the last reset (lifetime peak where resets are unsupported)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (1024 * 1024) if platform.system() == "Darwin" else rss / 1024, 1)
