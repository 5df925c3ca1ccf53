"""Stop strings in training mean what stock TRL means: the tokens the policy sampled, and nothing else.

A real HookedGRPOTrainer (tiny random Llama, LoRA, beta > 0 so the KL term counts) scores the same prompts with
the same seed twice: once as stock TRL (no stop strings) and once with stop strings. The stock run's tokens, cut
where their text first holds a stop string, are what the policy sampled before stopping. The stopped run must
train on exactly those: the end-of-turn token it appends is out of the completion mask, the loss and the KL equal
stock TRL's `compute_loss` on the sampled tokens alone, and the row still counts as finished.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

STOPS = ["e", "a", "o"]  # common letters: most rows of a random model stop early
G, PROMPTS, CAP = 4, 2, 12


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from grpo_tui.engine.models import ensure_tiny_random
    from grpo_tui.engine.train.trl_hooks import HookedGRPOTrainer

    path = ensure_tiny_random(log=lambda *a: None)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ds = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": f"What is {i} plus {i + 3}?"}]} for i in range(PROMPTS)]
    )

    def varied(completions, **kwargs):  # advantages must not be zero, or the loss would not see the tokens
        return [float(len(c[0]["content"]) % 3) for c in completions]

    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("stop")),
        per_device_train_batch_size=G * PROMPTS,
        num_generations=G,
        max_completion_length=CAP,
        beta=0.1,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
        gradient_checkpointing=False,
        seed=0,
    )
    tr = HookedGRPOTrainer(
        model=model,
        reward_funcs=[varied],
        args=args,
        train_dataset=ds,
        processing_class=tok,
        stop_strings=STOPS,
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )
    for name, p in tr.model.named_parameters():
        if "lora_B" in name:  # a trained adapter: the policy differs from the reference, so the KL is not zero
            p.data.normal_(0, 0.05)
    tr.model.train()
    tr.current_gradient_accumulation_steps = 1  # set by Trainer's loop; compute_loss reads it
    tr.inputs = [ds[i] for i in range(PROMPTS) for _ in range(G)]
    return tr


@contextlib.contextmanager
def _cap(trainer, cap: int):
    """max_completion_length = cap for TRL's generation (it is copied into the generation config at init)."""
    saved = trainer.max_completion_length
    trainer.max_completion_length = trainer.generation_config.max_new_tokens = cap
    trainer.generation_kwargs["max_new_tokens"] = cap
    try:
        yield
    finally:
        trainer.max_completion_length = trainer.generation_config.max_new_tokens = saved
        trainer.generation_kwargs["max_new_tokens"] = saved


def _score(trainer, stop: bool, seed: int = 1):
    saved = trainer.stop_strings
    trainer.stop_strings = STOPS if stop else []
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            return trainer.score_batch(trainer.inputs)
    finally:
        trainer.stop_strings = saved


def _sampled(trainer, stock) -> list[tuple[list[int], bool]]:
    """Stock TRL's tokens cut after the first one whose text holds a stop string: (tokens sampled, stopped)."""
    out = []
    for ids in stock.completion_ids:
        for k in range(1, len(ids) + 1):
            if ids[k - 1] not in trainer.eos_token_ids and any(
                s in trainer._tokenizer.decode(ids[:k], skip_special_tokens=True) for s in STOPS
            ):
                out.append((ids[:k], True))
                break
        else:
            out.append((ids, False))
    return out


def _stock_batch(trainer, ours: dict, sampled: list[list[int]]) -> dict:
    """The batch stock TRL builds from these sampled tokens (mask 1 on each, right-padded), with our batch's
    prompts, advantages and reference log-probs (the same prefixes, so the same values)."""
    from trl.trainer.utils import pad

    ids = pad([torch.tensor(s) for s in sampled], padding_value=trainer.pad_token_id, padding_side="right")
    mask = pad([torch.ones(len(s), dtype=torch.long) for s in sampled], padding_value=0, padding_side="right")
    width = ids.size(1)
    ref = ours["ref_per_token_logps"][:, :width]
    return {
        "prompt_ids": ours["prompt_ids"],
        "prompt_mask": ours["prompt_mask"],
        "completion_ids": ids,
        "completion_mask": mask,
        "advantages": ours["advantages"],
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }


def test_appended_end_token_is_out_of_the_loss_and_the_kl_as_in_stock_trl(trainer):
    from trl import GRPOTrainer

    sampled = _sampled(trainer, _score(trainer, stop=False))
    ours = _score(trainer, stop=True)
    stopped = [i for i, (_, st) in enumerate(sampled) if st]
    assert len(stopped) >= G, [t for t, _ in sampled]  # enough rows stop for the comparison to mean something
    eos, mask = trainer.eos_token_ids[0], ours.out["completion_mask"]
    for i, (tokens, st) in enumerate(sampled):
        got = ours.completion_ids[i]
        if st:  # the same tokens, closed by an end-of-turn token the mask leaves out
            assert got == tokens + [eos], (i, got, tokens)
            assert mask[i].tolist() == [1] * len(tokens) + [0] * (mask.size(1) - len(tokens)), (i, mask[i])
        else:
            assert got == tokens[: len(got)] and int(mask[i].sum()) == len(got)
    assert int(ours.out["num_items_in_batch"]) == int(mask.sum())
    # stock TRL's loss (policy term and beta x KL) over the sampled tokens alone, and its KL metric
    stock = _stock_batch(trainer, ours.out, [t for t, _ in sampled])
    metrics = trainer._metrics["train"]
    trainer.model.zero_grad()
    loss_stock = GRPOTrainer.compute_loss(trainer, trainer.model, stock)
    kl_stock = metrics["kl"][-1]
    loss_stock.backward()
    grads_stock = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    trainer.model.zero_grad()
    loss_ours = GRPOTrainer.compute_loss(trainer, trainer.model, ours.out)
    kl_ours = metrics["kl"][-1]
    loss_ours.backward()
    grads_ours = [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]
    trainer.model.zero_grad()
    assert kl_stock != 0.0
    torch.testing.assert_close(loss_ours, loss_stock, rtol=1e-5, atol=1e-7)
    assert kl_ours == pytest.approx(kl_stock, rel=1e-5)
    assert len(grads_ours) == len(grads_stock) > 0
    for a, b in zip(grads_ours, grads_stock):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    # finished, not truncated: TRL's clipped ratio counts only the rows that neither stopped nor sampled an end
    open_rows = sum(1 for ids in ours.completion_ids if ids[-1] not in trainer.end_token_ids())
    assert metrics["completions/clipped_ratio"][-1] == pytest.approx(open_rows / len(sampled))


def test_a_stop_string_completed_on_the_last_allowed_token_is_finished_not_cut(trainer):
    sampled = _sampled(trainer, _score(trainer, stop=False))
    # the cap at which the latest-stopping row completes its string on its last allowed token
    cap = max(len(t) for t, st in sampled if st)
    assert 1 < cap < CAP, sampled
    with _cap(trainer, cap):
        ours = _score(trainer, stop=True)
    eos, mask = trainer.eos_token_ids[0], ours.out["completion_mask"]
    at_cap = [i for i, (t, st) in enumerate(sampled) if st and len(t) == cap]
    assert at_cap
    for i in at_cap:
        assert ours.completion_ids[i] == sampled[i][0] + [eos]
        assert int(mask[i].sum()) == cap and mask[i, cap] == 0
    # cut at the cap: only the rows that had neither stopped nor ended by then
    cut = sum(1 for t, _ in sampled if len(t) > cap)
    assert trainer._metrics["train"]["completions/clipped_ratio"][-1] == pytest.approx(cut / len(sampled))
