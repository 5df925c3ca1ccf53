"""Live knobs follow what TRL's generation buffer does.

TRL generates steps_per_generation micro-batches at once and trains on them num_iterations times
(`GRPOTrainer._prepare_inputs`, `_buffered_inputs`). The engine's idea of "the next micro-step trains on
generations from before this optimizer step" is checked against that method itself, run unbound for several
shapes of the buffer. Then what follows from it: beta can be turned on in a LoRA run with gradient accumulation
(each optimizer step generates afresh), and a temperature change waits while a buffer spans optimizer steps
(its old log-probs were scored at the old temperature), then applies at the boundary where it runs out.
"""

from __future__ import annotations

import types

import pytest
import torch
from transformers import TrainerControl, TrainerState
from trl import GRPOTrainer

from grpo_tui.engine.train.trl_hooks import HookedGRPOTrainer

# (gradient_accumulation_steps, steps_per_generation, num_iterations)
SHAPES = [(1, 1, 1), (4, 4, 1), (8, 4, 1), (2, 1, 2), (4, 2, 2), (1, 2, 1), (2, 4, 1), (1, 1, 2), (3, 2, 1), (2, 4, 2)]


def regenerates_every_step(t) -> bool:
    """Every optimizer step starts on fresh generations: gradient_accumulation_steps is a multiple of the
    generation interval. Otherwise a buffer spans optimizer steps, and TRL keeps its old log-probs."""
    return t.args.gradient_accumulation_steps % t.generation_interval() == 0


class _Buffer:
    """Just what TRL's `_prepare_inputs` reads, with the engine's methods on top."""

    _prepare_inputs = GRPOTrainer._prepare_inputs
    generation_interval = HookedGRPOTrainer.generation_interval
    generations_buffered = HookedGRPOTrainer.generations_buffered

    def __init__(self, ga: int, spg: int, iterations: int) -> None:
        self.args = types.SimpleNamespace(gradient_accumulation_steps=ga, steps_per_generation=spg)
        self.num_iterations = iterations
        self.model = types.SimpleNamespace(training=True)
        self._step, self._buffered_inputs, self.generations = 0, None, 0

    def _generate_and_score_completions(self, batch):
        self.generations += 1
        return {"advantages": torch.arange(2 * self.args.steps_per_generation, dtype=torch.float32)}


@pytest.mark.parametrize("ga,spg,iterations", SHAPES)
def test_generations_buffered_says_what_trls_prepare_inputs_does_at_each_optimizer_step(ga, spg, iterations):
    t = _Buffer(ga, spg, iterations)
    fresh_at_boundaries = []
    for micro in range(ga * spg * iterations * 3):
        boundary = micro % ga == 0
        predicted = t.generations_buffered()
        before = t.generations
        t._prepare_inputs({})  # TRL's own decision: generate, or train on the buffer
        t._step += 1  # as GRPOTrainer.training_step counts micro-steps
        if boundary:
            assert predicted == (t.generations == before), (micro, predicted)
            fresh_at_boundaries.append(t.generations > before)
    assert regenerates_every_step(t) == all(fresh_at_boundaries)


@pytest.fixture(scope="module")
def lora_trainer(tmp_path_factory):
    """A real trainer: LoRA, beta = 0 (no reference model), a buffer of 2 micro-batches, no accumulation."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from grpo_tui.engine.models import ensure_tiny_random

    path = ensure_tiny_random(log=lambda *a: None)
    ds = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i} plus 1?"}]} for i in range(8)])
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("knobs")),
        per_device_train_batch_size=4,
        num_generations=4,
        steps_per_generation=2,
        gradient_accumulation_steps=1,
        max_completion_length=4,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        gradient_checkpointing=False,
    )
    return HookedGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
        args=args,
        train_dataset=ds,
        processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=LoraConfig(r=4, target_modules=["q_proj", "v_proj"]),
    )


def test_beta_can_be_turned_on_in_a_lora_run_with_gradient_accumulation(lora_trainer):
    """steps_per_generation = gradient_accumulation_steps = 4: TRL generates afresh at every optimizer step, so
    the generations beta would apply to are scored with reference log-probs."""
    from grpo_tui.engine.train.apply_knobs import check_knobs, wait_reason

    t = lora_trainer
    saved = (t.args.gradient_accumulation_steps, t.args.steps_per_generation)
    t.args.gradient_accumulation_steps = t.args.steps_per_generation = 4
    try:
        assert regenerates_every_step(t)
        check_knobs(t, {"beta": 0.04}, [])  # not refused
        t._buffered_inputs, t._step = [{}], 8  # a boundary: two optimizer steps of 4 micro-steps done
        assert wait_reason(t, {"beta": 0.04, "temperature": 0.5}) is None
    finally:
        t.args.gradient_accumulation_steps, t.args.steps_per_generation = saved
        t._buffered_inputs, t._step = None, 0


class _Events:
    def __init__(self) -> None:
        self.emitted: list[dict] = []

    def emit(self, type_: str, **fields) -> dict:
        self.emitted.append({"type": type_, **fields})
        return self.emitted[-1]

    def state(self, name: str, **fields) -> None:
        self.emit("state", state=name, **fields)


def test_a_temperature_change_waits_for_the_buffer_to_run_out(lora_trainer, tmp_path):
    from grpo_tui.engine.train.commands import CommandWatcher
    from grpo_tui.engine.train.engine_callback import EngineCallback

    t = lora_trainer
    events = _Events()
    watcher = CommandWatcher(tmp_path, events)
    cb = EngineCallback(events, watcher, None, [], None, max_steps=10, save_final=False, trainer=t)
    state, control = TrainerState(), TrainerControl()
    assert not regenerates_every_step(t)  # one generation batch trains two optimizer steps
    old = float(t.temperature)
    try:
        # after optimizer step 1: micro-step 1 of the buffer of 2 is next, its old log-probs from temperature `old`
        t._buffered_inputs, t._step, state.global_step = [{}, {}], 1, 1
        watcher.queue.put({"command": "set", "id": "c1", "args": {"temperature": 0.5, "beta": 0.1}})
        cb._handle_commands(state, control)
        cb._handle_commands(state, control)  # held again (requeued), and said only once
        assert float(t.temperature) == old and t.beta == 0.0
        waits = [e for e in events.emitted if e["type"] == "command"]
        assert len(waits) == 1 and waits[0]["status"] == "accepted" and "temperature" in waits[0]["detail"]
        assert not [e for e in events.emitted if e["type"] == "knobs"]
        # after optimizer step 2: the buffer is used up, the next micro-step generates at the new temperature
        t._step, state.global_step = 2, 2
        cb._handle_commands(state, control)
        assert float(t.temperature) == 0.5 and t.beta == 0.1 and t.generation_config.temperature == 0.5
        knobs = [e for e in events.emitted if e["type"] == "knobs"]
        assert len(knobs) == 1 and knobs[0]["step"] == 2
        assert events.emitted[-1]["status"] == "done" and "from step 3" in events.emitted[-1]["detail"]
        assert watcher.queue.empty()
    finally:
        from grpo_tui.engine.train.apply_knobs import apply_knobs

        t._buffered_inputs, t._step = None, 0
        apply_knobs(t, {"temperature": old, "beta": 0.0}, [])


def test_a_checkpoint_inside_a_buffer_keeps_it_for_a_resume_under_the_same_settings_only(lora_trainer, tmp_path):
    """The rest of a buffer is what the uninterrupted run trains on next; under another temperature (resumed with
    --set) its old log-probs would be wrong, so that resume generates afresh, as TRL does."""
    t = lora_trainer
    buffer = [{"advantages": torch.tensor([1.0, -1.0])}, {"advantages": torch.tensor([0.5, -0.5])}]
    old = float(t.temperature)
    try:
        t._buffered_inputs, t._step = buffer, 1
        t._save_rng_state(str(tmp_path))
        assert (tmp_path / "generation_buffer.pt").is_file()
        t._buffered_inputs, t._step = None, 0
        t.temperature = old + 0.5
        t._load_rng_state(str(tmp_path))
        assert t._buffered_inputs is None and t._step == 0
        t.temperature = old
        t._load_rng_state(str(tmp_path))
        assert t._step == 1 and [b["advantages"].tolist() for b in t._buffered_inputs] == [[1.0, -1.0], [0.5, -0.5]]
    finally:
        t._buffered_inputs, t._step, t.temperature = None, 0, old
