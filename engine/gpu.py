"""The visible CUDA GPUs: how many, the first one's name and memory. One probe for the preflight check, the
preset chooser, `grpo-tui presets` and the GPU harness.

NVML first (nvidia-ml-py): no CUDA context and no torch import, so a CPU machine answers at once. torch.cuda only
where NVML can't answer (no library, or CUDA_VISIBLE_DEVICES by UUID) and an NVIDIA device node exists.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

GiB = 2**30


@dataclass(frozen=True)
class Gpus:
    count: int  # visible to this process (CUDA_VISIBLE_DEVICES applied)
    name: str  # of the first visible GPU, e.g. "NVIDIA H100 80GB HBM3"
    total_gib: float  # memory of the first visible GPU


def visible_gpus() -> Gpus | None:
    """The visible CUDA GPUs, or None without one."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            indices = list(range(count))
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            if visible is not None:
                ids = [v.strip() for v in visible.split(",") if v.strip()]
                if not all(v.isdigit() for v in ids):
                    raise LookupError(visible)  # UUIDs or MIG names: torch resolves them
                indices = [int(v) for v in ids if int(v) < count]
            if not indices:
                return None
            handle = pynvml.nvmlDeviceGetHandleByIndex(indices[0])
            name = pynvml.nvmlDeviceGetName(handle)
            return Gpus(
                len(indices),
                name.decode() if isinstance(name, bytes) else name,
                pynvml.nvmlDeviceGetMemoryInfo(handle).total / GiB,
            )
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver, no NVML library, no permission: see below
        pass
    if not glob.glob("/dev/nvidia[0-9]*") and not glob.glob("/dev/dxg"):
        return None  # no NVIDIA device node: no CUDA GPU, and no need to import torch to learn that
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            props = torch.cuda.get_device_properties(0)
            return Gpus(torch.cuda.device_count(), props.name, props.total_memory / GiB)
    except Exception:  # noqa: BLE001
        pass
    return None


# The caching allocator's own setting. PYTORCH_ALLOC_CONF is torch 2.10's name for it; either one set by the
# user is theirs to keep.
ALLOC_CONF_VARS = ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF")
EXPANDABLE = "expandable_segments:True"
ALLOC_SET_BY_US_ENV = "GRPO_TUI_ALLOC_CONF_SET"  # our default, not the user's: a preset switch may take it back


def default_allocator_env(environ: dict[str, str] | os._Environ, vllm_sleep_mode: bool) -> str | None:
    """Set PYTORCH_CUDA_ALLOC_CONF to expandable segments unless the user set the allocator themselves; return a
    line saying what was done (None when nothing was).

    Expandable segments lower the memory torch's allocator holds idle at no step-time cost seen
    (docs/benchmarks.md). Not with vLLM's sleep mode: its memory pool refuses expandable segments. Call before
    the first CUDA allocation.
    """
    ours = environ.get(ALLOC_SET_BY_US_ENV) == "1"
    if not ours and any(environ.get(v) for v in ALLOC_CONF_VARS):
        return None  # the user's setting
    if vllm_sleep_mode:
        if ours:  # a preset switch into sleep mode: take our default back
            environ.pop("PYTORCH_CUDA_ALLOC_CONF", None)
            environ.pop(ALLOC_SET_BY_US_ENV, None)
            return "PYTORCH_CUDA_ALLOC_CONF unset again: vLLM's sleep mode does not work with expandable segments"
        return None
    if ours:
        return None  # already in force (a preset switch re-executes the engine)
    environ["PYTORCH_CUDA_ALLOC_CONF"] = EXPANDABLE
    environ[ALLOC_SET_BY_US_ENV] = "1"
    return (
        f"PYTORCH_CUDA_ALLOC_CONF={EXPANDABLE} (grpo-tui's default: less memory held idle by torch's "
        "allocator; set PYTORCH_CUDA_ALLOC_CONF yourself to choose)"
    )
