"""Faster transformers decoding on the CPU, same tokens: the KV cache grown in place, wide matmuls turned round.

A cpu-demo decode step (SmolLM2-135M, 8 rows, float32, 2-core AVX2 with MKL) is memory-bound: it reads
every weight once, and two things on top of that cost a large share of it:

- transformers' `DynamicLayer.update` appends a token by `torch.cat`, which copies the layer's whole
  cache every step (30 layers x keys and values: 15% of a decode step in a profile). `GrowingLayer`
  writes into a buffer with spare room and hands attention a view of the filled part.
- `F.linear(x, W)` with a few rows of `x` and a weight much wider than tall (the 49,152-token LM head,
  the MLP's up and gate projections) runs 1.1-2.7x slower in MKL than the same product computed as
  `(W @ x.T).T`, which `WideMatmul` uses for them.

Both apply only to no-grad passes on CPU tensors: training's forward and backward never see them.
Logits differ from the plain path by float rounding (1e-4 on SmolLM2); tests/test_fast_decode.py checks
greedy tokens are unchanged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import sys
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

__all__ = ["GrowingLayer", "WideMatmul", "cache_name", "growing_cache", "fast_cpu_generate"]


@functools.cache
def cache_name() -> str:
    """The KV cache's keyword and output field: `cache` since transformers 5.x renamed it, `past_key_values` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in {f.name for f in dataclasses.fields(CausalLMOutputWithPast)} else "past_key_values"


_ROOM = 64  # spare positions a buffer gets past what it holds: one reallocation covers a short completion


class GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views of a buffer with spare room, filled in place."""

    _buffers: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if torch.is_grad_enabled() and (key_states.requires_grad or value_states.requires_grad):
            return super().update(key_states, value_states, *args, **kwargs)  # autograd keeps the plain path
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        held = self.keys.shape[-2] if self.keys.numel() else 0
        need = held + key_states.shape[-2]
        bufs = self._buffers
        # keys replaced by someone else (batch_select_indices, reorder_cache, crop) mean the buffer is stale
        ours = (
            bufs is not None
            and self.keys.data_ptr() == bufs[0].data_ptr()
            and bufs[0].shape[:2] == key_states.shape[:2]
        )
        if not ours or need > bufs[0].shape[-2]:
            cap = need + max(_ROOM, need if ours else 0)  # doubling once generation outgrows the room
            kb = key_states.new_empty(*key_states.shape[:-2], cap, key_states.shape[-1])
            vb = value_states.new_empty(*value_states.shape[:-2], cap, value_states.shape[-1])
            if held:
                kb[..., :held, :] = self.keys
                vb[..., :held, :] = self.values
            self._buffers = bufs = (kb, vb)
        bufs[0][..., held:need, :] = key_states
        bufs[1][..., held:need, :] = value_states
        self.keys, self.values = bufs[0][..., :need, :], bufs[1][..., :need, :]
        return self.keys, self.values


def growing_cache(cache: Any | None = None) -> Any:
    """`cache` (a DynamicCache, filled or not) with its plain layers made GrowingLayers; a new one when None.
    Any other cache (static, sliding, quantized) is returned as it is."""
    if cache is None:
        cache = DynamicCache()
    if type(cache) is not DynamicCache:
        return cache
    if getattr(cache, "layer_class_to_replicate", None) is DynamicLayer:
        cache.layer_class_to_replicate = GrowingLayer
    for i, layer in enumerate(cache.layers):
        if type(layer) is DynamicLayer:
            grown = GrowingLayer.__new__(GrowingLayer)
            grown.__dict__.update(layer.__dict__)
            cache.layers[i] = grown
    return cache


def _transposed_forward(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() or x.dim() < 2 or x.numel() > 32 * x.shape[-1] or x.dtype != self.weight.dtype:
        return torch.nn.functional.linear(x, self.weight, self.bias)  # a prefill or training: the usual path
    flat = x.reshape(-1, x.shape[-1])
    y = (self.weight @ flat.T).T.contiguous()
    if self.bias is not None:
        y = y + self.bias
    return y.view(*x.shape[:-1], self.out_features)


class WideMatmul:
    """A model's wide linear layers (out >= 2 x in, in >= 256, on the CPU), which decode as `(W @ x.T).T`.

    A fixed rule, not a timing: the two orientations round differently, so a choice made by timing could
    differ between two runs of one seed and part their sampled tokens. Measured on this project's 2-core
    AVX2 machine with MKL: 0.37-0.55x the time for the LM head, 0.39-0.91x for the MLP's up and gate
    (`python bench/cpu_levers.py --only generation` on another CPU; `fast_cpu_decode = false` if slower).
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.modules: list[torch.nn.Linear] = [
            m
            for m in model.modules()
            if type(m) is torch.nn.Linear
            and m.weight.device.type == "cpu"
            and m.out_features >= 2 * m.in_features
            and m.in_features >= 256
        ]

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        for m in self.modules:
            m.forward = types.MethodType(_transposed_forward, m)
        try:
            yield
        finally:
            for m in self.modules:
                m.__dict__.pop("forward", None)

    def summary(self) -> str:
        shapes = Counter(f"{m.out_features}x{m.in_features}" for m in self.modules)
        return ", ".join(f"{shape} x{n}" for shape, n in shapes.items()) or "none"


def fast_cpu_generate(generate_fn: Callable[..., Any], model: torch.nn.Module, **kwargs: Any) -> Any:
    """`generate_fn(**kwargs)` with a growing KV cache (the one passed in, or a new one) and the model's wide
    layers turned round."""
    matmul = getattr(model, "_grpo_tui_wide_matmul", None)
    if matmul is None:
        matmul = model._grpo_tui_wide_matmul = WideMatmul(model)
        print(
            f"fast_cpu_decode: KV cache filled in place; products turned round for the wide layers "
            f"(out x in): {matmul.summary()}",
            file=sys.stderr,
            flush=True,
        )
    key = "past_key_values" if "past_key_values" in kwargs else cache_name()
    kwargs[key] = growing_cache(kwargs.get(key))
    with matmul.applied():
        return generate_fn(**kwargs)
