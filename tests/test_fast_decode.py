"""The CPU decoding path ([train] fast_cpu_decode) gives the plain path's tokens, on a real (random) model.

The model is wide enough for both levers to act: hidden 256, MLP 768 and a 1,024-token vocabulary, so
the LM head and the up/gate projections are the "wide" layers that may be turned round.
"""

from __future__ import annotations

import types

import pytest
import torch
from support.models import random_qwen2
from transformers import GenerationConfig
from transformers.cache_utils import DynamicCache, DynamicLayer

from grpo_tui.engine.fast_decode import GrowingLayer, WideMatmul, _transposed_forward, fast_cpu_generate, growing_cache
from grpo_tui.engine.train import shared_prefix


def _kv(rows: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, n, 8, generator=g), torch.randn(rows, 2, n, 8, generator=g)


def test_growing_layer_holds_what_concatenation_holds_across_growth_and_outside_edits():
    plain, grown = DynamicLayer(), GrowingLayer()
    for i, n in enumerate([30, 1, 1, 40, 1] + [1] * 70):  # past the first buffer's room: it reallocates
        k, v = _kv(3, n, i)
        pk, pv = plain.update(k, v)
        gk, gv = grown.update(k, v)
        assert torch.equal(pk, gk) and torch.equal(pv, gv)
    assert grown.get_seq_length() == plain.get_seq_length() == 143
    # reorders and crops replace the keys; the next update must start from them, not from the old buffer
    for layer in (plain, grown):
        layer.batch_select_indices(torch.tensor([2, 0]))
        layer.crop(-5)
    k, v = _kv(2, 1, 99)
    assert torch.equal(plain.update(k, v)[0], grown.update(k, v)[0])
    assert grown.get_seq_length() == 139


def test_growing_layer_leaves_autograd_to_the_plain_path():
    layer = GrowingLayer()
    k, v = _kv(1, 4, 0)
    layer.update(k, v)
    k2 = torch.randn(1, 2, 1, 8, requires_grad=True)
    keys, _ = layer.update(k2, torch.randn(1, 2, 1, 8))
    keys.sum().backward()
    assert k2.grad is not None and torch.equal(k2.grad, torch.ones_like(k2))


def test_growing_cache_converts_dynamic_layers_only():
    empty = growing_cache()
    assert type(empty) is DynamicCache and empty.layer_class_to_replicate is GrowingLayer
    filled = DynamicCache()
    filled.update(*_kv(2, 5, 0), layer_idx=0)
    filled.update(*_kv(2, 5, 1), layer_idx=1)
    keys = filled.layers[0].keys
    out = growing_cache(filled)
    assert out is filled and all(type(layer) is GrowingLayer for layer in out.layers)
    assert torch.equal(out.layers[0].keys, keys) and out.get_seq_length() == 5
    other = object()
    assert growing_cache(other) is other


def test_transposed_forward_matches_linear_and_steps_aside_for_prefill_and_grad():
    lin = torch.nn.Linear(64, 256)
    x = torch.randn(4, 1, 64)
    with torch.no_grad():
        assert torch.allclose(_transposed_forward(lin, x), lin(x), atol=1e-5)
        big = torch.randn(40, 64)  # a prefill's rows
        assert torch.equal(_transposed_forward(lin, big), lin(big))
    y = _transposed_forward(lin, x)
    assert y.requires_grad  # training goes through F.linear, with its autograd


def test_wide_matmul_turns_round_the_wide_layers_only_and_undoes_it():
    model = torch.nn.Sequential(
        torch.nn.Linear(256, 768),
        torch.nn.Linear(768, 256),
        torch.nn.Linear(256, 1024),
        torch.nn.Linear(16, 768),
        torch.nn.Linear(256, 384),
    )
    chosen = WideMatmul(model)
    assert chosen.modules == [model[0], model[2]]  # not the tall one, the 16-wide input, nor 1.5x wider
    with chosen.applied():
        assert "forward" in model[0].__dict__ and "forward" not in model[1].__dict__
        with torch.no_grad():
            x = torch.randn(3, 1, 256)
            assert torch.allclose(model[0](x), torch.nn.functional.linear(x, model[0].weight, model[0].bias), atol=1e-5)
    assert "forward" not in model[0].__dict__
    assert chosen.summary() == "768x256 x1, 1024x256 x1"


@pytest.fixture(scope="module")
def model():
    return random_qwen2(vocab_size=1024, hidden_size=256, intermediate_size=768, layers=2).eval()


def _prompts() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    long, short = torch.randint(2, 1024, (9,), generator=g), torch.randint(2, 1024, (5,), generator=g)
    ids = torch.stack([long, long, torch.cat([torch.zeros(4, dtype=torch.long), short])])
    mask = (torch.arange(9) >= torch.tensor([[0], [0], [4]])).long()
    return ids, mask


def test_greedy_generation_is_unchanged_plain_and_on_a_shared_prefix(model):
    assert len(WideMatmul(model).modules) == 5  # both levers act: lm_head and 2 layers' up and gate
    ids, mask = _prompts()
    gen = GenerationConfig(max_new_tokens=80, do_sample=False, pad_token_id=0, eos_token_id=None)
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=mask, generation_config=gen)
        fast = fast_cpu_generate(model.generate, model, input_ids=ids, attention_mask=mask, generation_config=gen)
        fn = types.MethodType(lambda self, **kw: fast_cpu_generate(self.generate, self, **kw), model)
        shared, on_prefix = shared_prefix.generate(fn, model, input_ids=ids, attention_mask=mask, generation_config=gen)
    assert on_prefix and plain.shape == (3, 9 + 80)
    assert torch.equal(fast, plain) and torch.equal(shared, plain)
    assert all("forward" not in m.__dict__ for m in model.modules())  # the orientation is undone afterwards


def test_eval_generation_with_several_samples_per_prompt(model):
    from grpo_tui.engine.eval.generation import generate

    class Tok:  # the eval path's tokenizer calls, over integer "words"
        eos_token_id, pad_token_id, padding_side = 1, 0, "left"

        def __call__(self, texts, return_tensors=None, padding=False, add_special_tokens=False):
            rows = [[int(w) for w in t.split()] for t in ([texts] if isinstance(texts, str) else texts)]
            if return_tensors is None:
                return {"input_ids": rows[0]}
            n = max(map(len, rows))
            ids = torch.tensor([[0] * (n - len(r)) + r for r in rows])
            return _Enc(input_ids=ids, attention_mask=(ids != 0).long())

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(map(str, ids))

    prompts = ["5 6 7 8", "9 10"]
    kw = dict(max_new_tokens=12, batch_size=4, num_samples=2, do_sample=True, temperature=1.0, seed=7)
    fast = generate(model, Tok(), prompts, fast_cpu_decode=True, **kw)
    plain = generate(model, Tok(), prompts, fast_cpu_decode=False, **kw)
    assert [[c.text for c in cs] for cs in fast] == [[c.text for c in cs] for cs in plain]
    assert all(len(cs) == 2 and cs[0].tokens > 0 for cs in fast)


class _Enc(dict):
    def to(self, device):
        return self
