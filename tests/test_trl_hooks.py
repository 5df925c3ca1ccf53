"""The TRL/transformers internals engine/train/trl_hooks.py relies on still look the way it expects.

A TRL upgrade that renames a private method, changes its parameters or drops
an attribute fails here, in CI, instead of mid-run after the model has loaded.
"""

from __future__ import annotations

import inspect

from transformers import Trainer
from trl import GRPOTrainer
from trl.trainer import utils as trl_utils

from grpo_tui.engine.train import trl_hooks
from grpo_tui.engine.train.dynamic_sampling import DynamicSamplingGRPOTrainer
from grpo_tui.engine.train.grpo import RecordingGRPOTrainer


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_private_method_signatures() -> None:
    assert _params(GRPOTrainer._calculate_rewards) == [
        "self",
        "inputs",
        "prompts",
        "completions",
        "completion_ids_list",
    ]
    assert _params(GRPOTrainer._generate_and_score_completions) == ["self", "inputs"]
    assert _params(Trainer._save_checkpoint) == ["self", "model", "trial"]
    assert _params(trl_utils.nanstd)[0] == "tensor" and "dim" in _params(trl_utils.nanstd)


def test_phase_timing_hook_signatures() -> None:
    """The methods phase timing wraps (engine/train/trl_hooks.py, HookedGRPOTrainer)."""
    assert _params(Trainer.training_step)[:3] == ["self", "model", "inputs"]
    assert _params(GRPOTrainer._prepare_inputs) == ["self", "generation_batch"]
    assert _params(GRPOTrainer._generate_single_turn)[:2] == ["self", "prompt_ids"]
    assert "self._generate_single_turn(" in inspect.getsource(GRPOTrainer._generate)
    assert _params(GRPOTrainer._get_per_token_logps_and_entropies)[:3] == ["self", "model", "input_ids"]
    assert _params(Trainer._clip_grad_norm) == ["self", "model"]
    assert _params(Trainer.log)[:2] == ["self", "logs"]


def test_shared_prefix_hooks_match_trl() -> None:
    """share_prompt_prefix replaces TRL's scoring pass and feeds a cache to its transformers `generate` call."""
    # the override names TRL's parameters explicitly; the rest must be extra inputs that default to None
    sig = inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies)
    assert list(sig.parameters)[:8] == [
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
        "compute_entropy",
        "compute_aux_loss",
    ]
    assert all(p.default is None for p in list(sig.parameters.values())[8:])
    src = inspect.getsource(GRPOTrainer._get_per_token_logps_and_entropies)
    # the scoring shared_prefix.score reproduces: labels masked outside the completion, TRL's fused LM head
    assert "labels[:, :-logits_to_keep] = -100" in src
    assert "model(**model_inputs, labels=labels, fused_lm_head=True)" in src
    assert "outputs.log_probs[:, -logits_to_keep:]" in src
    assert "add_fused_lm_head(" in inspect.getsource(GRPOTrainer.__init__)
    gen = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "unwrapped_model.generate(" in gen and "self.use_transformers_continuous_batching" in gen


def test_private_attributes_are_set_where_expected() -> None:
    # Building a trainer needs a model; the assignments in TRL's __init__ are what the hooks read.
    init = inspect.getsource(GRPOTrainer.__init__)
    for attr in (
        "self._tokenizer =",
        "self._metrics =",
        "self.eos_token_ids =",
        "self.reward_weights =",
        "self.reward_func_names =",
        "self.num_generations =",
        "self.pad_to_multiple_of =",
    ):
        assert attr in init, f"GRPOTrainer.__init__ no longer sets {attr.split()[0]}"
    assert '"train": defaultdict(list)' in init  # _metrics["train"]: key -> list, one value per scoring call


def test_scoring_calls_calculate_rewards_and_returns_the_fields_recorded() -> None:
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._calculate_rewards(inputs, prompts, completions, completion_ids_list)" in src
    for key in ('"advantages"', '"completion_mask"', '"completion_ids"', '"prompt_ids"'):
        assert key in src, f"TRL's batch dict has no {key} any more"


def test_memory_plan_tracks_trls_logprob_chunk() -> None:
    from grpo_tui.engine.plan.memory import FUSED_VOCAB_TILE

    assert trl_utils._CHUNKED_LOGPROB_CHUNK_SIZE == FUSED_VOCAB_TILE


def test_only_trl_hooks_overrides_trl_private_methods() -> None:
    """Engine trainers hook `generate_batch`; TRL's private methods are overridden in one class."""
    for name in ("_calculate_rewards", "_generate_and_score_completions"):
        owners = [c for c in DynamicSamplingGRPOTrainer.__mro__ if name in vars(c)]
        assert owners == [trl_hooks.HookedGRPOTrainer, GRPOTrainer], (name, owners)
    assert issubclass(RecordingGRPOTrainer, trl_hooks.HookedGRPOTrainer)
    assert "generate_batch" in vars(RecordingGRPOTrainer) and "generate_batch" in vars(DynamicSamplingGRPOTrainer)


def test_checkpoint_rng_hooks_match_transformers() -> None:
    """The engine's RNG state rides on Trainer's: written where `_save_checkpoint` writes its own, read back where
    the training loop restores its own on resume."""
    assert _params(Trainer._save_rng_state) == ["self", "output_dir"]
    assert _params(Trainer._load_rng_state) == ["self", "checkpoint"]
    assert "self._save_rng_state(output_dir)" in inspect.getsource(Trainer._save_checkpoint)
    assert "self._load_rng_state(resume_from_checkpoint)" in inspect.getsource(Trainer._run_epoch)


def test_generation_buffer_is_where_the_knob_conditions_look() -> None:
    """generations_buffered reads `_step` and `_buffered_inputs` the way `_prepare_inputs` uses them."""
    src = inspect.getsource(GRPOTrainer._prepare_inputs)
    assert "generate_every = self.args.steps_per_generation * self.num_iterations" in src
    assert "if self._step % generate_every == 0 or self._buffered_inputs is None:" in src
    assert "self._step += 1" in inspect.getsource(GRPOTrainer.training_step)
    assert "self._buffered_inputs = None" in inspect.getsource(GRPOTrainer.__init__)


def test_stop_string_hooks_match_trl() -> None:
    """A stopped row's end token is added to the token lists `_generate_single_turn` returns; TRL builds the
    completion mask from those lists' lengths, so the engine can zero the one column afterwards."""
    gen = inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "is_eos = torch.isin(completion_ids, torch.tensor(self.eos_token_ids" in gen
    assert "return completion_ids, logprobs" in gen
    score = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "completion_mask = [torch.ones_like(ids, dtype=torch.long) for ids in completion_ids]" in score
    assert "num_items_in_batch = self.accelerator.gather(loss_mask.sum()).sum()" in score
    from transformers import StopStringCriteria

    assert _params(StopStringCriteria.__init__)[:3] == ["self", "tokenizer", "stop_strings"]
