"""The generation bandwidth bound: how many tokens/s decoding could reach if reading memory were all it did.

Decoding one token for each of R rows reads every weight once (shared by the rows) and each row's KV cache:

    bound = R x bandwidth / (weight bytes + R x mean context x KV bytes per token of context)

Weight bytes leave out an input embedding that is not tied to the LM head (decoding looks up one row of it).
The mean context of a generate call is its mean prompt length plus half its mean completion length (the cache
grows from the one to the other). A step with several generate calls gets the rate at which all of them would
run at their bounds: their tokens over the sum of each call's tokens / its bound.

Bandwidth: on a GPU, NVML's maximum memory clock x bus width x 2 (double data rate), else a table of
published figures by device name; on the CPU, a copy of a buffer larger than the caches, timed once per
process.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psutil
import torch

# Published memory bandwidth (GB/s) by a distinctive part of the device name; the first match wins, so the
# more specific names come first.
GPU_BANDWIDTH_GB_S: tuple[tuple[str, float], ...] = (
    ("GH200", 4000),
    ("H200", 4800),
    ("H100 NVL", 3900),
    ("H100 PCIe", 2000),
    ("H100", 3350),
    ("H800", 3350),
    ("B200", 8000),
    ("A100-SXM4-80GB", 2039),
    ("A100 80GB PCIe", 1935),
    ("A100", 1555),
    ("A800", 2039),
    ("L40S", 864),
    ("L40", 864),
    ("L4", 300),
    ("A10G", 600),
    ("A10", 600),
    ("A40", 696),
    ("RTX 6000 Ada", 960),
    ("RTX A6000", 768),
    ("RTX 4090", 1008),
    ("RTX 4080", 717),
    ("RTX 3090", 936),
    ("RTX 3080", 760),
    ("V100", 900),
    ("T4", 320),
    ("MI300X", 5300),
    ("MI250", 3277),
)
CPU_COPY_BYTES = 256 << 20  # source buffer for the CPU measurement: larger than the last-level caches
CPU_COPY_REPEATS = 3


@dataclass(frozen=True)
class GpuRecord:
    """What the driver says about a card's memory (NVML's fields; None where it could not say)."""

    name: str
    memory_clock_mhz: float | None = None  # the maximum memory clock
    bus_width_bits: int | None = None


def bandwidth_from_clock(memory_clock_mhz: float, bus_width_bits: int) -> float:
    """Bytes/s of a memory bus: clock x width, two transfers per clock (NVML's convention for DDR and HBM)."""
    return memory_clock_mhz * 1e6 * bus_width_bits / 8 * 2


def bandwidth_from_name(name: str) -> float | None:
    """Bytes/s from the published table, or None for a card it does not list."""
    low = name.lower()
    for key, gb_s in GPU_BANDWIDTH_GB_S:
        if key.lower() in low:
            return gb_s * 1e9
    return None


def gpu_bandwidth(record: GpuRecord) -> float | None:
    """Bytes/s of a card: from its clock and bus width when the driver gives both, else from its name."""
    if record.memory_clock_mhz and record.bus_width_bits:
        return bandwidth_from_clock(record.memory_clock_mhz, record.bus_width_bits)
    return bandwidth_from_name(record.name)


def read_gpu_record(index: int) -> GpuRecord:
    """The card's name, and NVML's memory clock and bus width where NVML answers."""
    name = torch.cuda.get_device_name(index)
    try:
        import pynvml  # optional: without it the name table is used

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        return GpuRecord(
            name,
            float(pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_MEM)),
            int(pynvml.nvmlDeviceGetMemoryBusWidth(handle)),
        )
    except Exception:  # noqa: BLE001 - NVML missing, not permitted, or too old for the bus width
        return GpuRecord(name)


def measure_cpu_bandwidth(nbytes: int = CPU_COPY_BYTES, repeats: int = CPU_COPY_REPEATS) -> float:
    """Bytes/s the CPU moves in a large copy (bytes read + bytes written, best of `repeats`)."""
    # never more than an eighth of the free memory: the measurement must not push the run into swap
    nbytes = max(1 << 20, min(nbytes, psutil.virtual_memory().available // 8))
    src = torch.ones(nbytes // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults are not bandwidth
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * src.element_size() / best


@functools.cache
def device_bandwidth(device: str) -> float | None:
    """Memory bandwidth (bytes/s) of the device generation runs on; measured or looked up once per process."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return None
        return gpu_bandwidth(read_gpu_record(torch.cuda.current_device()))
    if device == "cpu":
        return measure_cpu_bandwidth()
    return None  # mps and others: no figure


@dataclass(frozen=True)
class DecodeCost:
    """Bytes one decoding step reads: the weights once, plus KV cache bytes per token of each row's context."""

    weight_bytes: int
    kv_bytes_per_token: int

    def bound(self, rows: int, mean_context: float, bandwidth: float) -> float:
        """Tokens/s for `rows` rows decoding together at `mean_context` tokens of context each."""
        read = self.weight_bytes + rows * mean_context * self.kv_bytes_per_token
        return rows * bandwidth / read


def _param_bytes(p: Any) -> int:
    return getattr(p, "ds_numel", p.numel()) * p.element_size()  # ZeRO-3 keeps only a shard in p


def decode_cost(model: Any) -> DecodeCost:
    """The decoding cost of a causal LM (plain, PEFT-wrapped, quantized or ZeRO-3 partitioned)."""
    weights = sum(_param_bytes(p) for p in model.parameters())
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if inp is not None and (out is None or inp.weight is not out.weight):
        weights -= _param_bytes(inp.weight)  # an untied input embedding: one row per token is looked up
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    dtype = getattr(model, "dtype", torch.float32)
    # a quantized model stores integers; its cache is in the compute dtype
    kv_elem = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 2
    return DecodeCost(weights, 2 * config.num_hidden_layers * kv_heads * head_dim * kv_elem)


@dataclass(frozen=True)
class GenerationCall:
    """One generate call of a step: completion tokens, rows decoded together, their mean context."""

    tokens: int
    rows: int
    mean_context: float


class GenerationBound:
    """The bound for one model on one device; None where the bandwidth is unknown."""

    def __init__(self, cost: DecodeCost, bandwidth: float | None) -> None:
        self.cost, self.bandwidth = cost, bandwidth

    def tokens_per_s(self, calls: Iterable[GenerationCall]) -> float | None:
        """The step's bound: its tokens over the seconds its calls would take at their bounds."""
        if not self.bandwidth:
            return None
        calls = [c for c in calls if c.rows > 0 and c.tokens > 0]
        seconds = sum(c.tokens / self.cost.bound(c.rows, c.mean_context, self.bandwidth) for c in calls)
        return round(sum(c.tokens for c in calls) / seconds, 2) if seconds > 0 else None


def generation_bound(model: Any, device: str) -> GenerationBound | None:
    """The bound for this model on this device, or None for a model whose config lacks the attention shape.

    Telemetry: a model this can't read must still train, so the step events then carry no bound.
    """
    try:
        cost = decode_cost(model)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return None
    return GenerationBound(cost, device_bandwidth(device))
