"""The append-only, versioned event log (events.jsonl), one JSON object a line.

Every line carries "v" (schema version), "t" (unix time) and "type", then the
fields of that type's record below. Lines are written whole and flushed per
event (under the writer's own lock, so any engine thread may emit) and a
reader tailing the file never sees a half-event except the very last line of
a killed engine, which readers skip.

Writing is rundir/event_writer.py, reading rundir/event_reader.py; this module holds the records.
The records below are the source of truth for every event type and field:
docs/run-directory.md's field tables are generated from them
(`python -m grpo_tui.rundir.event_docs` rewrites them; tests/test_events.py fails when
they disagree). `EventWriter.emit(type, **fields)` checks each event against
its record: an unknown type or field, a missing required field or a value
outside a field's choices raises ValueError, so drift fails in tests.

Adding an event type (or a field) takes one dataclass (or one line):

    @record("health")
    @dataclass
    class HealthEvent:
        \"\"\"A health check fired (what the docs say about the event, one paragraph).\"\"\"
        rule: str = info("the check's name")                 # required: no default
        step: int | None = info("step it fired at", None)   # optional: a default

then `python -m grpo_tui.rundir.event_docs` to update the docs. A new state or command is one
member of `State` or `Command` (rundir.control and the UIs take the list from there). Readers (rundir.state)
still read events as plain dicts and tolerate missing and unknown fields, so
old logs and logs from newer engines stay readable.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
from enum import Enum
from typing import Any, TypeVar

from grpo_tui.rundir.health import RULE_INFO, rules_markdown


class _StrEnum(str, Enum):
    """A str-valued enum: compares, hashes and serializes as its value ("running" == State.RUNNING)."""

    def __str__(self) -> str:  # f-strings and str() give the value on every Python version
        return self.value


class State(_StrEnum):
    """The engine's state machine, as written in `state` events."""

    STARTING = "starting"
    LOADING_MODEL = "loading_model"
    RUNNING = "running"
    PAUSING = "pausing"
    PAUSED = "paused"
    CHECKPOINTING = "checkpointing"
    STOPPING = "stopping"
    FINISHED = "finished"
    FAILED = "failed"


# States in which the engine is still working (or says so: it may have died without a run_end).
ACTIVE_STATES = frozenset(s for s in State if s not in (State.FINISHED, State.FAILED))


class Command(_StrEnum):
    """Commands a UI sends through control/ (rundir.control) and the engine acknowledges."""

    PAUSE = "pause"
    RESUME = "resume"
    CHECKPOINT = "checkpoint"
    STOP = "stop"
    SWITCH_PRESET = "switch_preset"
    SET = "set"  # live knobs (rundir/knobs.py), e.g. send_command(d, "set", learning_rate=1e-5)
    INVALID = "invalid"  # only in acknowledgements: a command file that could not be read


COMMANDS = tuple(c for c in Command if c is not Command.INVALID)  # what a UI may send


# ----------------------------------------------------------------- the records

RECORDS: dict[str, type] = {}  # event type -> its record class
_T = TypeVar("_T")


def info(help: str, default: Any = MISSING, choices: type[Enum] | tuple[str, ...] | None = None) -> Any:
    """A record field with its one-line help (and, for enum-like fields, the allowed values)."""
    meta = {"help": help, "choices": tuple(str(c) for c in choices) if choices is not None else None}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def record(type_name: str) -> Callable[[type[_T]], type[_T]]:
    """Register a dataclass as the record of one event type."""

    def wrap(cls: type[_T]) -> type[_T]:
        fs = dataclasses.fields(cls)
        cls.TYPE = type_name  # type: ignore[attr-defined]
        cls.FIELDS = frozenset(f.name for f in fs)  # type: ignore[attr-defined]
        cls.REQUIRED = frozenset(
            f.name
            for f in fs  # type: ignore[attr-defined]
            if f.default is MISSING and f.default_factory is MISSING
        )
        cls.CHOICES = {
            f.name: frozenset(f.metadata["choices"])  # type: ignore[attr-defined]
            for f in fs
            if f.metadata.get("choices")
        }
        RECORDS[type_name] = cls
        return cls

    return wrap


@record("run_start")
@dataclass
class RunStartEvent:
    """Written once per engine start (a resumed or switched run has several)."""

    run_dir: str = info("absolute path")
    preset: str = info("preset name")
    preset_path: str | None = info("file the preset came from", None)
    model: str | None = info("model name as configured", None)
    pid: int | None = info("engine pid", None)
    host: str | None = info("host name", None)
    resumed: bool = info("started with `--resume` (a preset switch resumes too)", False)
    resume_from: str | None = info("checkpoint resumed from", None)
    max_steps: int | None = info("last step of this run", None)
    num_generations: int | None = info("G, completions per prompt", None)
    reward_names: list[str] = info("reward functions, in column order", [])
    reward_weights: dict[str, float] = info("weight of each", {})
    device: str | None = info("`cpu`, `cuda:0`, ...", None)
    versions: dict[str, str] = info("torch, transformers, trl, peft, grpo-tui", {})
    config: dict[str, Any] | None = info("the resolved config in force (as config.json)", None)
    world_size: int | None = info("training processes (GPUs) of a distributed run", None)
    skipped_checkpoints: list[dict[str, Any]] | None = info(
        "with --resume: newer checkpoints that were damaged or unfinished and passed over ({path, reason})", None
    )
    restarted: bool | None = info("started with --restart", None)
    set_aside: str | None = info(
        "with --restart: where the earlier attempt's checkpoints and rollouts were moved", None
    )


@record("state")
@dataclass
class StateEvent:
    """The engine's state machine. A `state` without `step` is announced when a command is accepted and
    takes effect at the next step boundary (`checkpointing` then begins when the step ends)."""

    state: str = info("the new state", choices=State)
    step: int | None = info("global step when the state changed", None)
    detail: str | None = info("human-readable reason", None)


@record("dataset")
@dataclass
class DatasetEvent:
    """Once the training rows are ready (again once the model's tokenizer has dropped prompts over
    `[data] max_prompt_tokens`)."""

    source: str = info("`synthetic`, `gsm8k`, `hub`, `file`")
    origin: str | None = info("hub id or file paths", None)
    rows_total: int | None = info("rows read", None)
    rows_used: int | None = info("rows kept for training", None)
    rows_skipped: int | None = info("rows that could not be used, or left out to balance the mix", None)
    skipped: dict[str, int] = info(
        "reason -> count (`no_gold`, `empty_question`, `missing_field`, `bad_json`, "
        "`undecodable`, `bad_csv` (a broken quote, or a row with more or fewer fields "
        "than the header), `malformed` (a gold that is a column name), "
        "`prompt_too_long`; `balance`: beyond the rarest kind's count "
        "under `[data] balance_by`)",
        {},
    )
    max_prompt_tokens: int | None = info("the prompt-length limit in force (second event only)", None)


@record("model")
@dataclass
class ModelEvent:
    """Once the model is loaded."""

    name: str = info("as configured")
    path: str | None = info("where the weights were loaded from", None)
    parameters: int | None = info("all parameters", None)
    trainable: int | None = info("trainable parameters (LoRA: adapter only)", None)
    reference: str | None = info("the KL reference model's weights (beta > 0; after an SFT stage: the SFT model)", None)
    dtype: str | None = info("weights dtype", None)
    load_s: float | None = info("seconds to load", None)


@record("step")
@dataclass
class StepEvent:
    """After every optimizer step.

    With `[curriculum] dynamic_sampling`, `metrics` also holds
    `dynamic_sampling/frac_reward_zero_std_before` (TRL's zero-std fraction over
    the batch first sampled, i.e. without filtering; `frac_reward_zero_std` is
    then over the batch that trained), `dynamic_sampling/frac_uniform_correct_before`
    and `dynamic_sampling/frac_uniform_correct` (groups whose correctness is the
    same across all G, before and after filtering), `dynamic_sampling/extra_groups`,
    `dynamic_sampling/generated_ratio` and `dynamic_sampling/fallback_groups`
    (docs/eval.md).

    `phase_s` holds every one of these keys (rank 0's wall time; each second is
    charged to exactly one phase, the innermost that was running; a pause and an
    in-run eval count in neither `step_time_s` nor any phase):

    | phase | what it times |
    |---|---|
    | `generation` | sampling the G completions, plus the scoring glue around it (tokenizing, decoding, advantages) |
    | `rewards` | calling the reward functions |
    | `logprobs` | the no-grad old-policy and reference-model passes (zero with TRL's defaults: beta=0, aligned steps) |
    | `forward_backward` | the loss forward pass and the backward pass |
    | `optimizer` | gradient clipping, `optimizer.step`, the LR scheduler and zeroing the gradients |
    | `recording` | TRL's metric logging, writing this event, rollout recording and waiting for it |
    | `checkpoint` | saving a checkpoint (the step after a save carries it: the save runs after the step event) |
    | `other` | anything outside those (data loading, callbacks); small |

    The event is written in the middle of `recording`: the rest of that phase
    counts towards the next step."""

    step: int = info("global step (1-based)")
    max_steps: int | None = info("last step", None)
    epoch: float | None = info("epochs done", None)
    metrics: dict[str, float | None] = info(
        "TRL's logged metrics for this step: `reward`, `reward_std`, `rewards/<name>/mean`, `rewards/<name>/std`, "
        "`frac_reward_zero_std`, `completions/mean_length`, `completions/min_length`, `completions/max_length`, "
        "`completions/clipped_ratio`, `loss`, `grad_norm`, `learning_rate`, `entropy`, `kl` (when beta > 0), "
        "`num_tokens`, ...",
        {},
    )
    step_time_s: float | None = info("wall time of this step", None)
    tokens_per_s: float | None = info("tokens (prompt + completion) processed per second in this step", None)
    elapsed_s: float | None = info(
        "seconds since this engine process started training (readers add up engine starts: rundir.state)", None
    )
    eta_s: float | None = info("estimated seconds to `max_steps`", None)
    correct_frac: float | None = info(
        "fraction of this step's completions whose extracted answer matches the gold", None
    )
    phase_s: dict[str, float] | None = info(
        "seconds of this step per phase (below); the values add up to `step_time_s`", None
    )
    generation_tokens_per_s: float | None = info(
        "completion tokens generated per second of generation in this step (null when the step generated "
        "nothing, e.g. `steps_per_generation` > 1)",
        None,
    )
    generation_bound_tokens_per_s: float | None = info(
        "the memory-bandwidth bound for this step's generation: rows decoded together x the device's memory "
        "bandwidth / bytes read per decoding step (the weights, plus each row's KV cache at its mean context); "
        "`generation_tokens_per_s` over this is the share of the hardware's speed generation reached (null "
        "when the step generated nothing or the device's bandwidth is unknown)",
        None,
    )


@record("memory")
@dataclass
class MemoryEvent:
    """After every step and at start."""

    step: int = info("global step")
    device: str | None = info("`cpu` or `cuda:N`", None)
    allocated_gb: float | None = info("torch allocated (GPU)", None)
    reserved_gb: float | None = info("torch reserved (GPU)", None)
    peak_gb: float | None = info("torch peak allocated since start (GPU)", None)
    peak_reserved_gb: float | None = info(
        "torch peak reserved since start (GPU): allocated plus the caching allocator's unused blocks", None
    )
    total_gb: float | None = info("the card's memory (GPU) or the machine's RAM (CPU)", None)
    nvml_used_gb: float | None = info("NVML used memory on the card (all processes)", None)
    rss_gb: float | None = info("engine process resident memory", None)
    ranks: list[dict[str, Any]] | None = info("multi-process runs: one sample (the fields above) per rank", None)


@record("checkpoint")
@dataclass
class CheckpointEvent:
    """A checkpoint was written."""

    step: int = info("step the checkpoint holds")
    path: str = info("checkpoint directory")
    reason: str = info("why it was written", choices=("schedule", "command", "stop", "final", "switch"))


@record("command")
@dataclass
class CommandEvent:
    """Acknowledges a command file from `control/`."""

    id: str | None = info("the command's id")
    command: str = info("the command", choices=Command)
    status: str = info(
        "accepted (it acts at the next step boundary), then done or rejected", choices=("accepted", "done", "rejected")
    )
    detail: str | None = info("why rejected, or what was done", None)


@record("reward_failure")
@dataclass
class RewardFailureEvent:
    """A reward function raised, returned None/NaN or ran out of time; it scored 0 for
    those completions and training went on."""

    step: int = info("step")
    reward: str = info("reward name")
    kind: str = info("`exception`, `none`, `nan`, `timeout` (the first seen)")
    count: int = info("completions affected in this step")
    kinds: dict[str, int] | None = info("count of each kind", None)
    example: str | None = info("one message or example", None)


@record("stage")
@dataclass
class StageEvent:
    """A run with an SFT stage or a curriculum pre-pass goes through stages: `sft`,
    then `curriculum`, then `grpo`. Readers show the SFT stage from its
    `sft_step` events, then GRPO from `step` events, in the same run. Details:
    docs/eval.md."""

    stage: str = info("the stage", choices=("sft", "curriculum", "grpo"))
    status: str = info(
        "skipped: sft was done earlier in this run (e.g. before a resume); stopped: sft ended by a stop command",
        choices=("started", "finished", "skipped", "stopped"),
    )
    detail: str | None = info("sft skipped: why", None)
    examples: int | None = info("sft started: SFT examples", None)
    source: str | None = info("sft started: `gsm8k` or `synthetic`", None)
    origin: str | None = info("sft started: the files or hub id", None)
    skipped: int | None = info("sft started: examples that could not be used", None)
    max_steps: int | None = info("sft started: the SFT step limit, if one is set (else `epochs` decides)", None)
    epochs: float | None = info("sft started: epochs over the examples", None)
    effective_batch: int | None = info("sft started: examples per optimizer step", None)
    learning_rate: float | None = info("sft started: peak learning rate", None)
    lora: bool | None = info("sft started: LoRA (merged before GRPO) instead of full fine-tuning", None)
    resume_from: str | None = info("sft started: the SFT checkpoint it continues from", None)
    steps: int | None = info("sft finished: steps run", None)
    step: int | None = info("sft stopped: the step it stopped at", None)
    train_loss: float | None = info("sft finished: mean loss over the stage", None)
    loss: float | None = info("sft finished: the last step's loss", None)
    mean_token_accuracy: float | None = info("sft finished: the last step's token accuracy", None)
    path: str | None = info("sft finished/skipped: `RUN_DIR/sft/model`", None)
    problems: int | None = info("curriculum: problems scored", None)
    kept: int | None = info("curriculum finished: problems kept", None)
    cached: int | None = info("curriculum started: problems whose pass rate is cached", None)
    samples_per_problem: int | None = info("curriculum started: K completions per problem", None)
    rows: int | None = info("grpo started: training problems GRPO uses", None)
    elapsed_s: float | None = info("seconds the stage took", None)


@record("sft_step")
@dataclass
class SftStepEvent:
    """After every SFT optimizer step (before any GRPO `step` event)."""

    step: int = info("SFT step (1-based; separate from GRPO's steps)")
    max_steps: int | None = info("last SFT step", None)
    epoch: float | None = info("epochs done over the SFT examples", None)
    loss: float | None = info("cross-entropy on completion tokens (prompt tokens are masked)", None)
    mean_token_accuracy: float | None = info("fraction of completion tokens predicted right (argmax)", None)
    learning_rate: float | None = info("learning rate used", None)
    grad_norm: float | None = info("gradient norm before clipping", None)
    entropy: float | None = info("mean entropy of the predicted token distribution", None)
    num_tokens: float | None = info("tokens seen so far", None)
    step_time_s: float | None = info("this step's time", None)
    elapsed_s: float | None = info("seconds since the SFT stage began", None)
    eta_s: float | None = info("estimated seconds to the end of SFT", None)


@record("curriculum")
@dataclass
class CurriculumEvent:
    """Once the difficulty pre-pass has scored the training problems."""

    problems: int = info("problems scored (at most `prepass_max_problems`)")
    kept: int = info("problems kept for training")
    samples_per_problem: int | None = info("K completions sampled per problem", None)
    kept_frac: float | None = info("kept / problems", None)
    band: str | None = info("the kept pass-rate band, e.g. `(0.0, 1.0)` (parentheses: edges excluded)", None)
    min_pass_rate: float | None = info("the band's lower edge", None)
    max_pass_rate: float | None = info("the band's upper edge", None)
    exclusive: bool | None = info("edges excluded", None)
    mean_pass_rate: float | None = info("mean pass rate over the scored problems", None)
    all_wrong: int | None = info("problems with pass rate 0", None)
    all_right: int | None = info("problems with pass rate 1", None)
    histogram: dict[str, int] = info('`"c/K"` -> problems with c of K correct', {})
    cached: int | None = info("problems whose pass rate came from a cache", None)
    reused_from: str | None = info("`pass_rates_file` read, if any", None)
    path: str | None = info("the run's `curriculum/pass_rates.jsonl`", None)
    elapsed_s: float | None = info("seconds the pre-pass took", None)


@record("eval")
@dataclass
class EvalEvent:
    """Greedy evaluation of the live model on a fixed held-out subset (`[eval]`):
    before the first step (step 0), every `every_steps` steps, and after the last."""

    step: int = info("global step evaluated (0 = before training)")
    dataset: str = info("`synthetic`, `gsm8k`, `math500` or the file")
    n: int = info("items evaluated (the same items every time)")
    accuracy: float = info("strict greedy pass@1: answer extracted in the trained format is correct")
    correct: int | None = info("items right (strict)", None)
    ci_low: float | None = info("Wilson 95% interval of `accuracy`, lower end", None)
    ci_high: float | None = info("Wilson 95% interval of `accuracy`, upper end", None)
    accuracy_flex: float | None = info("flexible score: the last number (MATH: last `\\boxed{}`) is correct", None)
    correct_flex: int | None = info("items right (flexible)", None)
    format_rate: float | None = info("fraction of answers with a strict extraction at all", None)
    mean_tokens: float | None = info("mean completion length", None)
    truncated_frac: float | None = info("fraction that hit `max_new_tokens`", None)
    max_new_tokens: int | None = info("generation limit used", None)
    eval_s: float | None = info("seconds the evaluation took (not counted as step time)", None)
    path: str | None = info("per-item results, `RUN_DIR/eval/step-N.jsonl`", None)


@record("error")
@dataclass
class ErrorEvent:
    """Something went wrong; with a traceback when the engine failed."""

    message: str = info(
        "one short line (an OS error names what was being written: "
        "`no space left on device while writing checkpoint-12`)"
    )
    traceback: str | None = info("the Python traceback (its last 8,000 characters)", None)


@record("health")
@dataclass
class HealthEvent:
    """A health rule (rundir/health.py) started or stopped firing.

    The engine runs the rules after every step (and on every `reward_failure`)
    and writes only changes (a firing rule clears only after 5 quiet steps in a
    row, so a noisy metric at its threshold doesn't flap), so the log is the
    record every UI displays: the dashboard's health panel, the headless printer
    and its run summary read these events and judge nothing themselves.
    `rundir.health.check_run(events)` gives the events a recorded run would get.
    A resumed engine's rules first read the recorded steps up to its checkpoint,
    so they judge the whole run; it writes `ok` at the checkpoint's step for a
    warning raised in the steps it rewinds, and `warn` again for one that fired
    at the checkpoint and cleared after it.

    The rules, their meaning and fix, at the default thresholds (`rundir.health.Thresholds`):
    """

    step: int = info("step at which the rule changed")
    rule: str = info(", ".join(f"`{name}`" for name in RULE_INFO))
    status: str = info("`warn` (started firing) or `ok` (no longer fires)", choices=("warn", "ok"))
    value: float | None = info("the number the rule compared", None)
    threshold: float | None = info("what it was compared against", None)
    diagnosis: str = info("one line: what is wrong", "")
    fix: str = info("one line: what to change, naming preset keys", "")


# the rules' table comes from their own records, so it always quotes the thresholds in force
HealthEvent.__doc__ = f"{HealthEvent.__doc__.rstrip()}\n\n{textwrap.indent(rules_markdown(), '    ')}\n"


@record("knobs")
@dataclass
class KnobsEvent:
    """A `set` command's values were applied at a step boundary (after the step
    below; the next step uses them). The dashboard marks the step on the curves."""

    step: int = info("the step after which the values apply")
    id: str | None = info("the `set` command's id", None)
    values: dict[str, Any] = info(
        "the new values: any of `learning_rate`, `temperature`, `top_p`, `beta`, "
        "`reward_weights` ({reward name: weight})",
        {},
    )
    previous: dict[str, Any] = info("the same keys' values before the change", {})


@record("run_end")
@dataclass
class RunEndEvent:
    """Last event of an engine process. `switched`: the same engine process continues the run under
    another preset (a `run_start` follows)."""

    status: str = info("how it ended", choices=("finished", "stopped", "failed", "switched"))
    step: int | None = info("last completed step", None)
    exit_code: int | None = info("the engine's exit code", None)
    elapsed_s: float | None = info("seconds since this engine process started", None)
    next_preset: str | None = info("switched: the preset the run continues under", None)


def check_event(type: str, fields: dict[str, Any]) -> None:
    """Raise ValueError unless `fields` fit the record of `type` (names, required fields, choices)."""
    rec = RECORDS.get(type)
    if rec is None:
        raise ValueError(
            f"unknown event type {type!r}: add a record for it in rundir/events.py "
            f"(known: {', '.join(sorted(RECORDS))})"
        )
    unknown = fields.keys() - rec.FIELDS
    if unknown:
        raise ValueError(
            f"event {type!r} has no field(s) {', '.join(sorted(unknown))}: add them to "
            f"rundir.events.{rec.__name__} (fields: {', '.join(sorted(rec.FIELDS))})"
        )
    missing = rec.REQUIRED - fields.keys()
    if missing:
        raise ValueError(f"event {type!r} needs field(s) {', '.join(sorted(missing))} (rundir.events.{rec.__name__})")
    for name, allowed in rec.CHOICES.items():
        value = fields.get(name)
        if value is not None and value not in allowed:
            raise ValueError(f"event {type!r}: {name}={value!r} is not one of {', '.join(sorted(allowed))}")
