"""Shared prompt prefixes give TRL's own log-probs, entropies, gradients and greedy generations, on a real model.

The reference is TRL's `_get_per_token_logps_and_entropies` itself (called unbound), on a random Qwen2 with
TRL's fused LM head and a peft LoRA, with two prompts of different lengths left-padded in one batch.
"""

from __future__ import annotations

import types
from contextlib import nullcontext

import pytest
import torch
from support.models import random_qwen2

from grpo_tui.engine.train import shared_prefix
from grpo_tui.engine.train.shared_prefix import generation_positions, prompt_groups

TEMPERATURE = 0.7


def test_prompt_groups_keeps_first_appearance_order_and_tells_no_sharing():
    ids = torch.tensor([[5, 6], [1, 2], [5, 6], [1, 2], [1, 2]])
    mask = torch.ones_like(ids)
    first, rows = prompt_groups(ids, mask)
    assert first.tolist() == [0, 1] and rows.tolist() == [0, 1, 0, 1, 1]
    assert prompt_groups(ids[:2], mask[:2]) is None
    padded = torch.tensor([[0, 6], [0, 6]])  # same ids, one padded differently: not the same prompt
    assert prompt_groups(padded, torch.tensor([[0, 1], [1, 1]])) is None


def test_generation_positions_count_real_tokens():
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert generation_positions(mask).tolist() == [[1, 1, 0, 1], [0, 1, 2, 3]]


@pytest.fixture(scope="module")
def lora_model():
    from peft import LoraConfig, get_peft_model
    from trl.trainer.utils import add_fused_lm_head

    base = random_qwen2(vocab_size=300, hidden_size=64, intermediate_size=128, layers=3)
    add_fused_lm_head(base, temperature=TEMPERATURE, outputs=("log_probs", "entropy"))  # as GRPOTrainer does
    model = get_peft_model(
        base,
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj", "down_proj"],
            layers_to_transform=[1, 2],
            layers_pattern="layers",
        ),
    )
    for name, p in model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.05)  # a trained adapter, not peft's zero start
    return model


def _batch(G: int = 3):
    """Two prompts (lengths 7 and 4, left-padded), G completions each (right-padded after an end)."""
    g = torch.Generator().manual_seed(1)
    long, short = torch.randint(2, 300, (7,), generator=g), torch.randint(2, 300, (4,), generator=g)
    prompts = torch.stack([long] * G + [torch.cat([torch.zeros(3, dtype=torch.long), short])] * G)
    pmask = torch.ones_like(prompts)
    pmask[G:, :3] = 0
    C = 6
    comp = torch.randint(2, 300, (2 * G, C), generator=g)
    cmask = torch.ones_like(comp)
    for i in range(2 * G):
        cmask[i, 2 + i % (C - 2) :] = 0
    comp = comp.masked_fill(cmask == 0, 0)
    return torch.cat([prompts, comp], 1), torch.cat([pmask, cmask], 1), C, cmask


def _trl_pass(model, ids, mask, C, batch_size=None):
    from trl import GRPOTrainer

    fake = types.SimpleNamespace(accelerator=types.SimpleNamespace(autocast=nullcontext, is_main_process=True))
    logps, ent, _ = GRPOTrainer._get_per_token_logps_and_entropies(
        fake, model, ids, mask, C, batch_size=batch_size, compute_entropy=True
    )
    return logps, ent


def _grads(model, logps, cmask):
    model.zero_grad()
    (-(logps * cmask).sum() / cmask.sum()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_score_equals_trls_pass_log_probs_entropies_and_gradients(lora_model):
    ids, mask, C, cmask = _batch()
    ref_lp, ref_ent = _trl_pass(lora_model, ids, mask, C)
    ref_grads = _grads(lora_model, ref_lp, cmask)
    lp, ent = shared_prefix.score(lora_model, ids, mask, C, compute_entropy=True)
    grads = _grads(lora_model, lp, cmask)
    assert lp.shape == ref_lp.shape == cmask.shape
    torch.testing.assert_close(lp * cmask, ref_lp * cmask, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent * cmask, ref_ent * cmask, atol=1e-5, rtol=1e-5)
    assert (lp[cmask == 0] == 0).all()  # masked positions are zero, as in TRL's
    assert set(grads) == set(ref_grads) and len(grads) == 12  # lora A and B of 3 modules x 2 layers
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], atol=1e-6, rtol=1e-4)


def test_score_chunks_like_trl_and_declines_when_no_prompt_repeats(lora_model):
    ids, mask, C, cmask = _batch()
    with torch.no_grad():
        ref_lp, _ = _trl_pass(lora_model, ids, mask, C, batch_size=3)
        lp, ent = shared_prefix.score(lora_model, ids, mask, C, batch_size=3)
    torch.testing.assert_close(lp * cmask, ref_lp * cmask, atol=1e-5, rtol=1e-5)
    assert ent is None
    # chunks of 2 rows from 3 + 3: the chunk [row 2, row 3] mixes two prompts, once each: TRL's pass runs instead
    assert shared_prefix.score(lora_model, ids, mask, C, batch_size=2) is None


def test_generate_with_a_shared_prefill_matches_plain_generation(lora_model):
    ids, mask, _, _ = _batch()
    P = 7
    prompts, pmask = ids[:, :P], mask[:, :P]
    calls = []

    def generate_fn(**kw):
        calls.append(shared_prefix.cache_name() in kw)
        return lora_model.generate(**kw)

    lora_model.eval()
    # the logits of every generated position, not just the greedy tokens: a random model's argmax barely
    # depends on the context, its logits do
    kw = dict(max_new_tokens=5, do_sample=False, pad_token_id=0, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        plain = lora_model.generate(input_ids=prompts, attention_mask=pmask, **kw)
        shared, was_shared = shared_prefix.generate(
            generate_fn, lora_model, input_ids=prompts, attention_mask=pmask, **kw
        )
    lora_model.train()
    assert calls == [True] and was_shared  # the prefilled cache was handed over
    assert torch.equal(plain.sequences, shared.sequences)
    torch.testing.assert_close(torch.stack(shared.logits), torch.stack(plain.logits), atol=1e-4, rtol=1e-4)
