"""The generation bandwidth bound: a device's memory bandwidth, the bytes a decoding step reads, a step's bound."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from grpo_tui.engine.train.generation_bound import (
    DecodeCost,
    GenerationBound,
    GenerationCall,
    GpuRecord,
    bandwidth_from_clock,
    decode_cost,
    device_bandwidth,
    gpu_bandwidth,
    measure_cpu_bandwidth,
)
from grpo_tui.engine.train.phase_timer import PhaseTimer


def test_gpu_bandwidth_from_nvml_clock_and_bus_width():
    # an H100 SXM as NVML reports it: 2619 MHz maximum memory clock, 5120-bit HBM3 bus -> its published 3.35 TB/s
    h100 = GpuRecord("NVIDIA H100 80GB HBM3", memory_clock_mhz=2619, bus_width_bits=5120)
    assert gpu_bandwidth(h100) == pytest.approx(3.35e12, rel=0.01)
    # GDDR (a T4: 5001 MHz, 256 bits -> 320 GB/s) follows the same rule
    assert bandwidth_from_clock(5001, 256) == pytest.approx(320e9, rel=0.01)


def test_gpu_bandwidth_falls_back_to_the_name_table_most_specific_first():
    assert gpu_bandwidth(GpuRecord("NVIDIA H200")) == pytest.approx(4.8e12)
    assert gpu_bandwidth(GpuRecord("NVIDIA H100 PCIe")) == pytest.approx(2.0e12)  # not the SXM figure
    assert gpu_bandwidth(GpuRecord("NVIDIA A100-SXM4-80GB")) == pytest.approx(2.039e12)
    assert gpu_bandwidth(GpuRecord("NVIDIA GeForce RTX 4090")) == pytest.approx(1.008e12)
    assert gpu_bandwidth(GpuRecord("Some Future Accelerator")) is None
    # a driver that gives the clock but not the bus width: the name decides
    assert gpu_bandwidth(GpuRecord("NVIDIA L4", memory_clock_mhz=6251, bus_width_bits=None)) == pytest.approx(3e11)


def test_cpu_bandwidth_is_measured_once_per_process():
    assert 1e8 < measure_cpu_bandwidth(8 << 20, repeats=2) < 1e13  # a memory copy: 0.1 GB/s .. 10 TB/s
    first = device_bandwidth("cpu")
    hits = device_bandwidth.cache_info().hits
    assert device_bandwidth("cpu") == first and device_bandwidth.cache_info().hits == hits + 1
    assert device_bandwidth("mps") is None


def _llama(tied: bool) -> LlamaForCausalLM:
    cfg = LlamaConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=100,
        tie_word_embeddings=tied,
    )
    return LlamaForCausalLM(cfg)


def test_decode_cost_counts_the_lm_head_not_an_untied_input_embedding():
    untied, tied = _llama(False), _llama(True)
    all_untied = sum(p.numel() for p in untied.parameters()) * 4
    assert decode_cost(untied).weight_bytes == all_untied - 100 * 64 * 4  # the looked-up table is left out
    assert decode_cost(tied).weight_bytes == sum(p.numel() for p in tied.parameters()) * 4  # read as the LM head
    # K and V, 2 layers, 2 KV heads of 16 dims, float32
    assert decode_cost(untied).kv_bytes_per_token == 2 * 2 * 2 * 16 * 4
    assert decode_cost(untied.to(torch.bfloat16)).kv_bytes_per_token == 2 * 2 * 2 * 16 * 2


def test_bound_is_rows_times_bandwidth_over_bytes_per_decoding_step():
    cost = DecodeCost(weight_bytes=1_000_000, kv_bytes_per_token=100)
    assert cost.bound(1, 0, 1e9) == pytest.approx(1000.0)  # one row, empty cache: weights only
    # 8 rows at 500 tokens of context: weights once plus 8 x 500 x 100 bytes of cache
    assert cost.bound(8, 500, 1e9) == pytest.approx(8 * 1e9 / (1_000_000 + 8 * 500 * 100))


def test_step_bound_weights_each_call_by_the_time_it_would_take():
    cost = DecodeCost(weight_bytes=1_000_000, kv_bytes_per_token=0)
    bound = GenerationBound(cost, bandwidth=1e9)
    # 1 row -> 1000 tok/s, 4 rows -> 4000 tok/s; 100 tokens each: 0.1 s + 0.025 s for 200 tokens
    calls = [GenerationCall(100, 1, 10.0), GenerationCall(100, 4, 10.0)]
    assert bound.tokens_per_s(calls) == pytest.approx(200 / 0.125)
    assert bound.tokens_per_s([]) is None  # a step that generated nothing
    assert GenerationBound(cost, bandwidth=None).tokens_per_s(calls) is None  # unknown device


def test_phase_timer_keeps_the_shape_of_each_generate_call_for_the_step():
    clock = iter(range(100)).__next__
    t = PhaseTimer(clock=lambda: float(clock()))
    # two prompts (3 and 5 tokens), four rows of 2, 4, 6 and 8 completion tokens
    t.count_generation([[1] * 3, [1] * 5], [[1] * 2, [1] * 4, [1] * 6, [1] * 8], seconds=2.0)
    _, tps = t.snapshot()
    assert tps == 10.0
    assert t.step_generation == [GenerationCall(tokens=20, rows=4, mean_context=4 + 5 / 2)]
    t.snapshot()
    assert t.step_generation == []  # the next step generated nothing


def test_a_model_without_the_attention_shape_trains_without_a_bound():
    from types import SimpleNamespace

    from grpo_tui.engine.train.generation_bound import generation_bound

    odd = _llama(False)
    odd.config = SimpleNamespace(hidden_size=64)  # no heads or layers to read
    assert generation_bound(odd, "cpu") is None
    bound = generation_bound(_llama(True), "cpu")
    assert bound is not None and bound.tokens_per_s([GenerationCall(10, 2, 5.0)]) > 0
