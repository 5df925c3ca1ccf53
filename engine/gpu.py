"""The visible CUDA GPUs: how many, the first one's name and memory. One probe for the preflight check, the
preset chooser, `grpo-tui presets` and the GPU harness.

NVML first (nvidia-ml-py): no CUDA context and no torch import, so a CPU machine answers at once. torch.cuda only
where NVML can't answer (no library, or CUDA_VISIBLE_DEVICES by UUID) and an NVIDIA device node exists.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

GiB = 2 ** 30


@dataclass(frozen=True)
class Gpus:
    count: int        # visible to this process (CUDA_VISIBLE_DEVICES applied)
    name: str         # of the first visible GPU, e.g. "NVIDIA H100 80GB HBM3"
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
            return Gpus(len(indices), name.decode() if isinstance(name, bytes) else name,
                        pynvml.nvmlDeviceGetMemoryInfo(handle).total / GiB)
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
