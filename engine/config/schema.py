"""The preset schema: one typed dataclass per TOML section, each field with its default, help, choices and range.

A preset is plain data (nanoGPT-style), like TRL's GRPOConfig: every knob is declared once, here, with
everything a loader, a validator or a reference page needs to know about it.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_tui.engine.rewards.answer_format import PROMPT_FORMATS
from grpo_tui.rundir.errors import GrpoTuiError

from .trl_meta import TrlChoices


class PresetError(GrpoTuiError, ValueError):
    """A preset or override that can't be used. The message names file, key and fix."""


@dataclass(frozen=True)
class Range:
    """Values that make sense for a number field (outside them TRL fails late, or the run means nothing)."""

    low: float
    high: float = math.inf
    open_low: bool = False  # the low end itself is excluded (a learning rate of 0 trains nothing)
    why: str = ""  # what the bound means, when the number alone doesn't say

    def contains(self, value: float) -> bool:
        above = self.low < value if self.open_low else self.low <= value
        return math.isfinite(value) and above and value <= self.high

    def __str__(self) -> str:
        if self.high == math.inf:
            text = f"{'above' if self.open_low else 'at least'} {self.low:g}"
        else:
            text = f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}]"
        return f"{text} ({self.why})" if self.why else text


def knob(
    default: Any,
    help: str,
    choices: tuple | TrlChoices | None = None,
    *,
    range: Range | None = None,
    internal: bool = False,
) -> Any:
    """A dataclass field carrying its help, its allowed values (a tuple, or TRL's own list) and its range."""
    meta: dict[str, Any] = {"help": help}
    if choices:
        meta["choices"] = choices
    if range is not None:
        meta["range"] = range
    if internal:
        meta["internal"] = True
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def field_choices(f: dataclasses.Field) -> tuple | None:
    """A field's allowed values, with a list copied from TRL read from the installed TRL."""
    choices = f.metadata.get("choices")
    if isinstance(choices, TrlChoices):
        return choices.values() or None  # a help that lists none: TRL itself judges the value
    return choices


# [train] and [sft] also take every field of the installed TRL's GRPOConfig / SFTConfig (passthrough.py).
TRL_PASSTHROUGH: dict[str, str] = {"train": "GRPOConfig", "sft": "SFTConfig"}


@dataclass
class PresetInfo:
    name: str = knob("", "Preset name shown in the UI (defaults to the file name).")
    description: str = knob("", "One line on what this preset is for.")
    recipe: str = knob("", "The published recipe this preset follows, if any.")
    device: str = knob("auto", "Device class the preset is meant for.", ("cpu", "gpu", "auto"))
    expected_peak_gb: float | None = knob(None, "Peak GPU memory reported for this recipe, in GB.")
    min_gpu_gb: float | None = knob(None, "Smallest GPU memory the preset is meant to fit, in GB.")


LR_SCHEDULES = ("constant", "constant_with_warmup", "linear", "cosine")  # for GRPO and the SFT stage alike

# [model] keys a checkpoint depends on: another value means other weights or another adapter shape, so a run can
# switch only to a preset that agrees on every one (the engine's check and the dashboard's picker read this)
MODEL_SHAPE_KEYS = (
    "name",
    "lora",
    "lora_r",
    "lora_target_modules",
    "lora_layers",
    "load_in_4bit",
    "tiny_hidden_size",
    "tiny_layers",
)


@dataclass
class ModelConfig:
    name: str = knob(
        "tiny-random", "Hub id, local directory, 'smollm2-135m-instruct' (offline) or 'tiny-random' (tests)."
    )
    dtype: str = knob(
        "auto",
        "Weights dtype; 'auto' is bfloat16 on a GPU that supports it, else float32.",
        ("auto", "float32", "bfloat16", "float16"),
    )
    lora: bool = knob(False, "Train LoRA adapters through peft instead of all weights.")
    lora_r: int = knob(16, "LoRA rank.", range=Range(1))
    lora_alpha: int = knob(32, "LoRA alpha.", range=Range(0, open_low=True))
    lora_dropout: float = knob(0.05, "LoRA dropout.", range=Range(0.0, 1.0))
    lora_target_modules: list[str] = knob(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "Modules that get LoRA adapters ('all-linear' as the single entry for every linear layer).",
    )
    lora_layers: int = knob(
        0,
        "Put LoRA only in the last N transformer layers (0 = all). Backward then stops at "
        "the lowest adapted layer: much faster on a CPU.",
        range=Range(0),
    )
    load_in_4bit: bool = knob(False, "Load the base model in 4-bit NF4 (QLoRA; needs bitsandbytes and a GPU).")
    gradient_checkpointing: bool = knob(False, "Recompute activations in the backward pass to save memory.")
    attn_implementation: str | None = knob(
        None, "Attention kernel passed to transformers (e.g. 'sdpa', 'flash_attention_2')."
    )
    tiny_hidden_size: int = knob(64, "tiny-random only: hidden size of the random Llama.", range=Range(1))
    tiny_layers: int = knob(2, "tiny-random only: number of layers of the random Llama.", range=Range(1))


@dataclass
class DataConfig:
    # engine/data/loader.py: the one loader behind training, the SFT stage and eval.
    source: str = knob(
        "synthetic",
        "Where training problems come from: built-in problems, GSM8K, any hub dataset "
        "(dataset, dataset_config, split) or local files (data_files).",
        ("synthetic", "gsm8k", "hub", "file"),
    )
    dataset: str = knob("", "Hub dataset id for source 'hub' (e.g. 'swulling/gsm8k_chinese').")
    dataset_config: str | None = knob(None, "Hub dataset configuration name, if it has several (e.g. 'main').")
    data_files: list[str] = knob(
        [],
        "Local JSONL/Parquet/CSV files (gsm8k/hub: a local copy used instead of the hub; "
        "file: required). Relative to the working directory.",
    )
    split: str = knob("train", "Split to train on (hub datasets).")
    question_field: str = knob(
        "question",
        "Field holding the question, or a list of chat messages used as the prompt "
        "('auto': question, problem, prompt or messages).",
    )
    question_template: str | None = knob(None, 'Question built from several fields instead, e.g. "{Body} {Question}".')
    answer_field: str = knob("answer", "Field holding the gold answer or solution ('auto': answer, else solution).")
    gold_format: str = knob(
        "auto",
        "How the gold answer is written: after '####' (gsm8k), last \\boxed{} (boxed), the whole "
        "field (plain), one number with or without a unit ('9 (apples)', '145.0'; number), or "
        "guessed per row (auto).",
        ("auto", "gsm8k", "boxed", "plain", "number"),
    )
    extra_fields: list[str] = knob(
        [], "More columns passed to reward functions as keyword arguments (TRL passes dataset columns to rewards)."
    )
    max_prompt_tokens: int = knob(
        0,
        "Skip (and count) rows whose prompt is longer than this many tokens (0 = the model's "
        "context minus max_completion_length).",
        range=Range(0),
    )
    synthetic_difficulty: int = knob(
        1,
        "Synthetic problems: 1 one operation, 2 two operations, 3 three operations with larger numbers.",
        range=Range(1, 3),
    )
    synthetic_size: int = knob(2000, "Synthetic problems: how many to generate.", range=Range(1))
    max_examples: int = knob(0, "Use at most this many training rows after shuffling (0 = all).", range=Range(0))
    shuffle: bool = knob(True, "Shuffle rows with the run seed before training.")
    balance_by: str | None = knob(
        None,
        "Train in rounds that take one row of each value of this field (e.g. 'operation' "
        "for synthetic problems, a subject or level column): every run of K prompts "
        "covers the K kinds, each kind capped at the rarest's count. Replaces the "
        "shuffle, and turns TRL's own (shuffle_dataset) off so the order is kept. "
        "Rows dropped later (a curriculum band, a prompt too long for the model) "
        'leave gaps in their rounds. Unset or "": off.',
    )


@dataclass
class PromptConfig:
    format: str = knob("reasoning", "Output format asked for in the system prompt.", PROMPT_FORMATS)
    system_prompt: str | None = knob(None, "Replace the format's built-in system prompt.")
    one_shot: bool = knob(
        False, "Show one worked example as an earlier chat turn (helps small models find the format)."
    )


@dataclass
class TrainConfig:
    # Field names match trl.GRPOConfig so they pass straight through.
    learning_rate: float = knob(5e-6, "Peak learning rate.", range=Range(0.0, 1.0, open_low=True))
    lr_scheduler_type: str = knob("cosine", "Learning-rate schedule.", LR_SCHEDULES)
    warmup_ratio: float = knob(0.1, "Fraction of steps spent warming up the learning rate.", range=Range(0.0, 1.0))
    weight_decay: float = knob(0.0, "AdamW weight decay.", range=Range(0.0))
    max_grad_norm: float = knob(0.1, "Gradient-norm clip.", range=Range(0.0))
    optim: str = knob("adamw_torch", "Optimizer name as transformers knows it (e.g. adamw_torch, paged_adamw_8bit).")
    adam_beta1: float = knob(0.9, "AdamW beta1.", range=Range(0.0, 1.0))
    adam_beta2: float = knob(0.99, "AdamW beta2.", range=Range(0.0, 1.0))
    num_generations: int = knob(
        8,
        "G: completions sampled per prompt (the group).",
        range=Range(2, why="GRPO compares at least 2 completions of each prompt"),
    )
    per_device_train_batch_size: int = knob(
        8, "Completions per device per micro-batch (TRL counts completions, not prompts).", range=Range(1)
    )
    gradient_accumulation_steps: int = knob(1, "Micro-batches per optimizer step.", range=Range(1))
    steps_per_generation: int | None = knob(
        None, "Micro-batches generated at once (default: gradient_accumulation_steps)."
    )
    max_completion_length: int = knob(
        200, "Most tokens generated per completion; longer ones are truncated.", range=Range(1)
    )
    temperature: float = knob(1.0, "Sampling temperature.", range=Range(0.0, 100.0, open_low=True))
    top_p: float = knob(1.0, "Nucleus sampling threshold.", range=Range(0.0, 1.0, open_low=True))
    top_k: int = knob(0, "Top-k sampling (0 = off).", range=Range(0))
    repetition_penalty: float = knob(1.0, "Repetition penalty during generation.", range=Range(0.0, open_low=True))
    beta: float = knob(0.0, "KL coefficient; > 0 loads a reference model.", range=Range(0.0))
    loss_type: str = knob(
        "dapo",
        "GRPO loss formulation (the installed TRL's GRPOConfig lists them).",
        TrlChoices("GRPOConfig", "loss_type"),
    )
    scale_rewards: str = knob(
        "group",
        "Divide advantages by the group std ('group'), the batch std ('batch') or not at all ('none').",
        TrlChoices("GRPOConfig", "scale_rewards"),
    )
    epsilon: float = knob(0.2, "PPO clip range (lower).", range=Range(0.0))
    epsilon_high: float | None = knob(None, "PPO clip range (upper; default: epsilon).", range=Range(0.0))
    num_iterations: int = knob(1, "Optimization passes over each generated batch (mu).", range=Range(1))
    mask_truncated_completions: bool = knob(False, "Exclude truncated completions from the loss.")
    max_steps: int = knob(100, "Optimizer steps to train.", range=Range(1))
    bf16: bool | None = knob(None, "bf16 mixed precision (default: on for GPUs that support it, off on CPU).")
    seed: int = knob(42, "Seed for data order, sampling and weights init.", range=Range(0))
    torch_threads: int = knob(
        0,
        "CPU threads for torch (0 = auto: on a CPU, the cores not busy at start, i.e. cores "
        "minus the cores other work used over 0.3 s (/proc/stat), at least 1; with a GPU, "
        "torch's default).",
        range=Range(0, why="0 = auto"),
    )
    save_steps: int = knob(
        0, "Write a checkpoint every N steps (0 = only on command, stop and at the end).", range=Range(0)
    )
    save_total_limit: int | None = knob(3, "Keep at most this many checkpoints.", range=Range(1))
    save_final: bool = knob(True, "Write a checkpoint when training ends.")
    use_vllm: bool = knob(False, "Generate with vLLM (needs the 'vllm' extra and a GPU).")
    vllm_mode: str = knob(
        "colocate",
        "vLLM mode: in the training processes ('colocate') or a separate `trl vllm-serve` ('server').",
        TrlChoices("GRPOConfig", "vllm_mode"),
    )
    vllm_gpu_memory_utilization: float = knob(
        0.3, "Fraction of GPU memory vLLM reserves (colocate).", range=Range(0.0, 1.0, open_low=True)
    )
    report_to: str | list[str] = knob(
        "none",
        "Trackers that also get TRL's logs, beside events.jsonl: 'none', or a list of "
        "'tensorboard', 'wandb', 'trackio' (the tracker's package must be installed).",
    )
    run_name: str | None = knob(None, "Run name shown in the trackers (default: the run directory's name).")
    project: str | None = knob(None, "Tracker project (W&B: WANDB_PROJECT; trackio: its project; default 'grpo-tui').")
    trl_extra: dict[str, Any] = knob(
        {}, "Any other trl.GRPOConfig field, written directly in [train] (filled by the loader).", internal=True
    )
    # the vLLM knobs a 24-80 GB user sets (passed to trl.GRPOConfig under the same names)
    vllm_enable_sleep_mode: bool = knob(
        False,
        "Colocate: vLLM frees its weights and KV cache while the trainer runs "
        "backward and the optimizer step (less peak memory, slower wake-up).",
    )
    vllm_max_model_length: int | None = knob(
        None,
        "Colocate: vLLM's context window (prompt + completion tokens); "
        "smaller means less KV cache reserved (default: the model's).",
    )
    vllm_tensor_parallel_size: int = knob(
        1, "Colocate: GPUs one vLLM engine spans (must divide the processes per machine).", range=Range(1)
    )
    share_prompt_prefix: bool = knob(
        False,
        "Encode each distinct prompt once per batch and share its KV cache among its "
        "G completions, in generation and in the scoring forward/backward (same "
        "log-probs and gradients as TRL's pass; single process, no gradient "
        "checkpointing, LoRA without dropout). A lever for CPU runs, where the "
        "prompt's share of the work is large; docs/benchmarks.md has the timings.",
    )
    stop_strings: list[str] = knob(
        [],
        'End each completion at the first of these strings (e.g. ["</answer>"]): '
        "generation stops there and the completion ends with the end-of-turn token, "
        "so nothing after the answer is generated or trained on; held-out evals stop "
        "there too. Transformers generation only.",
    )
    fast_cpu_decode: bool = knob(
        True,
        "On the CPU, transformers generation (training and held-out evals) keeps its "
        "KV cache in a buffer filled in place instead of copied every token, and runs "
        "the wide matmuls (LM head, MLP up/gate) as (W @ x.T).T, which MKL runs faster "
        "for a few rows. Same tokens to float rounding; no effect on a GPU.",
    )
    record_token_stats: bool = knob(
        True,
        "Store each completion's per-token log-probabilities and entropies, taken from the loss's own pass, in "
        "the rollouts (the token view, t). Off keeps the rollouts store smaller: text, token ids, rewards and "
        "advantages only.",
    )
    use_cpu: bool = knob(
        False,
        "Train on the CPU even when a GPU is visible (`--device cpu`): every other knob stays; "
        "parts that need CUDA are refused in pre-flight.",
    )


@dataclass
class SftConfig:
    # Stage 1 of the two-stage recipe (engine/train/sft.py): supervised cold start on worked solutions
    # rewritten into the prompt format, loss on completion tokens only; GRPO then starts from it.
    enabled: bool = knob(
        False, "Run an SFT cold-start stage before GRPO; GRPO starts from its weights (saved in RUN_DIR/sft/model)."
    )
    source: str = knob(
        "auto",
        "Worked solutions to imitate: GSM8K solutions ('gsm8k', <<calc>> notes stripped), traces of the "
        "built-in synthetic problems ('synthetic'), or 'auto' (follows [data] source).",
        ("auto", "gsm8k", "synthetic"),
    )
    data_files: list[str] = knob(
        [],
        "GSM8K-style JSONL/Parquet files (question, answer with '####'); default: [data] data_files "
        "when [data] source = 'gsm8k', else the hub's openai/gsm8k train split.",
    )
    max_examples: int = knob(0, "Use at most this many SFT examples after shuffling (0 = all).", range=Range(0))
    epochs: float = knob(2.0, "Passes over the SFT examples.", range=Range(0.0))
    max_steps: int = knob(0, "Stop SFT after this many optimizer steps (0 = run the epochs).", range=Range(0))
    learning_rate: float = knob(2e-5, "SFT peak learning rate.", range=Range(0.0, 1.0, open_low=True))
    lr_scheduler_type: str = knob("cosine", "SFT learning-rate schedule.", LR_SCHEDULES)
    warmup_ratio: float = knob(0.03, "Fraction of SFT steps spent warming up.", range=Range(0.0, 1.0))
    weight_decay: float = knob(0.0, "SFT AdamW weight decay.", range=Range(0.0))
    max_grad_norm: float = knob(1.0, "SFT gradient-norm clip.", range=Range(0.0))
    optim: str = knob("adamw_torch", "SFT optimizer name as transformers knows it.")
    per_device_train_batch_size: int = knob(8, "SFT sequences per device per micro-batch.", range=Range(1))
    gradient_accumulation_steps: int = knob(
        4, "SFT micro-batches per optimizer step (effective batch = the two multiplied).", range=Range(1)
    )
    max_length: int = knob(1024, "SFT sequences (prompt + solution) longer than this are truncated.", range=Range(1))
    lora: bool = knob(
        False, "Train the SFT stage as LoRA ([model] lora_* settings) and merge it into the weights before GRPO."
    )
    save_steps: int = knob(
        0,
        "Write an SFT checkpoint every N steps (RUN_DIR/sft/checkpoints; 0 = none). A resumed run continues from it.",
        range=Range(0),
    )
    trl_extra: dict[str, Any] = knob(
        {}, "Any other trl.SFTConfig field, written directly in [sft] (filled by the loader).", internal=True
    )


@dataclass
class CurriculumConfig:
    # engine/train/curriculum.py (difficulty pre-pass) and engine/train/dynamic_sampling.py (group filtering).
    prepass: bool = knob(
        False,
        "Before GRPO, sample prepass_samples completions per training problem with the starting model "
        "and keep only problems whose pass rate is in the band (cached in RUN_DIR/curriculum/).",
    )
    prepass_samples: int = knob(8, "Completions sampled per problem in the pre-pass (K).")
    prepass_max_problems: int = knob(
        256, "Score at most this many training problems (0 = all); training uses the kept ones only.", range=Range(0)
    )
    prepass_batch_size: int = knob(
        0, "Sequences generated at once in the pre-pass (0 = 64 on a GPU, 8 on a CPU).", range=Range(0)
    )
    min_pass_rate: float = knob(0.0, "Lower edge of the kept pass-rate band.", range=Range(0.0, 1.0))
    max_pass_rate: float = knob(1.0, "Upper edge of the kept pass-rate band.", range=Range(0.0, 1.0))
    exclusive: bool = knob(
        True, "Band edges excluded (the default band (0, 1) keeps problems solved sometimes but not always)."
    )
    pass_rates_file: str | None = knob(
        None,
        "Reuse pass rates cached by an earlier run (its curriculum/pass_rates.jsonl); problems not in it are scored.",
    )
    dynamic_sampling: bool = knob(
        False,
        "Drop groups whose G completions are all right or all wrong and refill the batch "
        "with groups of fresh prompts (DAPO-style dynamic sampling).",
    )
    dynamic_sampling_criterion: str = knob(
        "correctness",
        "What makes a group uninformative: identical correctness of the extracted answers, or identical total reward.",
        ("correctness", "total"),
    )
    dynamic_sampling_max_extra: float = knob(
        1.0,
        "Cap on refill generation per batch, as a multiple of the batch's groups "
        "(0 = measure only: report the fractions, drop nothing).",
        range=Range(0.0),
    )


@dataclass
class EvalConfig:
    # engine/eval/evaluate.py: greedy evaluation on a fixed held-out subset during training, written as `eval` events.
    every_steps: int = knob(
        0,
        "Evaluate every N optimizer steps (0 = off); with N > 0 also before the first step and after the last.",
        range=Range(0, why="0 = off"),
    )
    dataset: str = knob(
        "synthetic", "'synthetic' (held-out built-in problems), 'gsm8k', 'math500', or a JSONL/Parquet file."
    )
    split: str = knob("test", "Split of a named dataset.")
    limit: int = knob(64, "Evaluate this many items (the same fixed subset every time).", range=Range(1))
    max_new_tokens: int = knob(0, "Tokens generated per answer (0 = [train] max_completion_length).", range=Range(0))
    batch_size: int = knob(0, "Sequences generated at once (0 = 64 on a GPU, 8 on a CPU).", range=Range(0))


@dataclass
class DistributedConfig:
    # More than one process: the engine re-launches itself through `accelerate launch`; rank 0 alone
    # writes the run directory and reads commands, which it broadcasts so every rank acts at the same step.
    num_processes: int = knob(
        1, "Processes (one per GPU) across all machines; > 1 runs the engine through accelerate launch.", range=Range(1)
    )
    backend: str = knob(
        "ddp",
        "How the model is spread: DDP replicas, DeepSpeed ZeRO-2/ZeRO-3 sharding, or FSDP2.",
        ("ddp", "deepspeed-zero2", "deepspeed-zero3", "fsdp2"),
    )
    cpu_offload: bool = knob(
        False, "DeepSpeed/FSDP: keep optimizer states (ZeRO-3/FSDP: also parameters) in CPU memory."
    )
    num_machines: int = knob(
        1, "Machines (nodes) in the job; run the same command on each with its machine_rank.", range=Range(1)
    )
    machine_rank: int = knob(0, "This machine's rank (0 on the main node).", range=Range(0))
    main_process_ip: str = knob("127.0.0.1", "Address of the main node (machine_rank 0), reachable from every node.")
    main_process_port: int = knob(
        29500, "Port on the main node for the process-group rendezvous.", range=Range(1, 65535)
    )
    vllm_server_host: str | None = knob(
        None, "Generate with a separate `trl vllm-serve` at this host (TRL server mode)."
    )
    vllm_server_port: int = knob(8000, "Port of the `trl vllm-serve` server.", range=Range(1, 65535))
    vllm_group_port: int = knob(
        51216, "Port for the weight-update group between trainer and `trl vllm-serve`.", range=Range(1, 65535)
    )
    vllm_server_timeout: float = knob(
        240.0,
        "Seconds to wait for the `trl vllm-serve` server to answer before failing.",
        range=Range(0.0, open_low=True),
    )


@dataclass
class Config:
    preset: PresetInfo = field(default_factory=PresetInfo)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    rewards: dict[str, Any] = field(
        default_factory=lambda: {"correctness": 1.0, "soft_format": 1.0},
        metadata={"help": "Reward name (or 'file.py:function') -> weight, or a table {weight = W, option = ...}."},
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    source: str = field(default="", metadata={"help": "Where this config was loaded from (set by the loader)."})

    def to_dict(self) -> dict[str, Any]:
        """Plain data as a preset would write it: TRL passthrough fields sit flat in their section."""
        out = dataclasses.asdict(self)
        for section in TRL_PASSTHROUGH:
            out[section].update(out[section].pop("trl_extra", {}))
        return out

    def reward_weights(self) -> dict[str, float]:
        """Name -> weight, whether the preset wrote a bare weight or a table."""
        return {k: float(v["weight"]) if isinstance(v, dict) else float(v) for k, v in self.rewards.items()}

    def reward_options(self) -> dict[str, dict[str, Any]]:
        return {
            k: {o: x for o, x in v.items() if o != "weight"} if isinstance(v, dict) else {}
            for k, v in self.rewards.items()
        }

    @property
    def base_dir(self) -> Path | None:
        """Folder of the preset file, against which user reward files resolve."""
        return Path(self.source).parent if self.source.endswith((".toml", ".yaml", ".yml")) else None


SECTIONS: dict[str, type] = {
    "preset": PresetInfo,
    "model": ModelConfig,
    "data": DataConfig,
    "prompt": PromptConfig,
    "train": TrainConfig,
    "sft": SftConfig,
    "curriculum": CurriculumConfig,
    "eval": EvalConfig,
    "distributed": DistributedConfig,
}


def type_name(tp: Any) -> str:
    """A field's type in the words a TOML writer uses ("integer", "list of string", "number or none")."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if typing.get_origin(tp) is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if typing.get_origin(tp) is dict or tp is dict:
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "true/false"}.get(tp, str(tp))


def field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else None


def describe_fields() -> list[tuple[str, str, str, str]]:
    """(section.key, type, default, help) for every knob; used by docs and `grpo-tui presets --fields`."""
    rows = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            rows.append((f"{section}.{f.name}", type_name(hints[f.name]), repr(field_default(f)), f.metadata["help"]))
    return rows
