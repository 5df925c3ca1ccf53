"""Memory telemetry: torch's CUDA figures, NVML's view of the card, and process RSS."""

from __future__ import annotations

import os
from typing import Any

import psutil
import torch

GB = 1024**3


class MemoryProbe:
    def __init__(self, device: str) -> None:
        self.device = device
        self._proc = psutil.Process(os.getpid())
        self._nvml = None
        if device.startswith("cuda"):
            try:
                import pynvml

                pynvml.nvmlInit()
                index = torch.cuda.current_device()
                self._nvml = (pynvml, pynvml.nvmlDeviceGetHandleByIndex(index))
            except Exception:  # NVML missing or not permitted: torch figures still work
                self._nvml = None

    def sample(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "device": self.device,
            "rss_gb": round(self._proc.memory_info().rss / GB, 3),
            "allocated_gb": None,
            "reserved_gb": None,
            "peak_gb": None,
            "peak_reserved_gb": None,
            "nvml_used_gb": None,
            "total_gb": None,
        }
        if self.device.startswith("cuda") and torch.cuda.is_available():
            out["device"] = f"cuda:{torch.cuda.current_device()}"
            out["allocated_gb"] = round(torch.cuda.memory_allocated() / GB, 3)
            out["reserved_gb"] = round(torch.cuda.memory_reserved() / GB, 3)
            out["peak_gb"] = round(torch.cuda.max_memory_allocated() / GB, 3)
            # what the caching allocator held at its peak: the card-wide figure less this is the CUDA context
            # and memory outside torch (vLLM, NCCL)
            out["peak_reserved_gb"] = round(torch.cuda.max_memory_reserved() / GB, 3)
            out["total_gb"] = round(torch.cuda.get_device_properties(0).total_memory / GB, 3)
            if self._nvml:
                pynvml, handle = self._nvml
                try:
                    info = pynvml.nvmlDeviceGetMemoryInfo(handle)
                    out["nvml_used_gb"] = round(info.used / GB, 3)
                except Exception:
                    pass
        else:
            out["total_gb"] = round(psutil.virtual_memory().total / GB, 3)
        return out
