"""Presets: TOML files validated into a typed config.

A preset is plain data (nanoGPT-style): every knob is a typed dataclass field
with a one-line help and a default, like TRL's GRPOConfig. Loading is strict:
an unknown key, a wrong type or an impossible combination raises PresetError
naming the file, the key and what is allowed, before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import difflib
import enum
import functools
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from grpo_tui.rundir.errors import GrpoTuiError


class PresetError(GrpoTuiError, ValueError):
    """A preset or override that can't be used. The message names file, key and fix."""


def _f(default: Any, help: str, choices: tuple | None = None, internal: bool = False, **kw: Any) -> Any:
    meta: dict[str, Any] = {"help": help}
    if choices:
        meta["choices"] = choices
    if internal:
        meta["internal"] = True
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class PresetInfo:
    name: str = _f("", "Preset name shown in the UI (defaults to the file name).")
    description: str = _f("", "One line on what this preset is for.")
    recipe: str = _f("", "The published recipe this preset follows, if any.")
    device: str = _f("auto", "Device class the preset is meant for.", ("cpu", "gpu", "auto"))
    expected_peak_gb: float | None = _f(None, "Peak GPU memory reported for this recipe, in GB.")
    min_gpu_gb: float | None = _f(None, "Smallest GPU memory the preset is meant to fit, in GB.")


@dataclass
class ModelConfig:
    name: str = _f("tiny-random", "Hub id, local directory, 'smollm2-135m-instruct' (offline) or 'tiny-random' (tests).")
    dtype: str = _f("auto", "Weights dtype; 'auto' is bfloat16 on a GPU that supports it, else float32.",
                    ("auto", "float32", "bfloat16", "float16"))
    lora: bool = _f(False, "Train LoRA adapters through peft instead of all weights.")
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha.")
    lora_dropout: float = _f(0.05, "LoRA dropout.")
    lora_target_modules: list[str] = _f(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                        "Modules that get LoRA adapters ('all-linear' as the single entry for every linear layer).")
    lora_layers: int = _f(0, "Put LoRA only in the last N transformer layers (0 = all). Backward then stops at "
                              "the lowest adapted layer: much faster on a CPU.")
    load_in_4bit: bool = _f(False, "Load the base model in 4-bit NF4 (QLoRA; needs bitsandbytes and a GPU).")
    gradient_checkpointing: bool = _f(False, "Recompute activations in the backward pass to save memory.")
    attn_implementation: str | None = _f(None, "Attention kernel passed to transformers (e.g. 'sdpa', 'flash_attention_2').")
    tiny_hidden_size: int = _f(64, "tiny-random only: hidden size of the random Llama.")
    tiny_layers: int = _f(2, "tiny-random only: number of layers of the random Llama.")


@dataclass
class DataConfig:
    # engine/data/loader.py: the one loader behind training, the SFT stage and eval.
    source: str = _f("synthetic", "Where training problems come from: built-in problems, GSM8K, any hub dataset "
                                  "(dataset, dataset_config, split) or local files (data_files).",
                     ("synthetic", "gsm8k", "hub", "file"))
    dataset: str = _f("", "Hub dataset id for source 'hub' (e.g. 'swulling/gsm8k_chinese').")
    dataset_config: str | None = _f(None, "Hub dataset configuration name, if it has several (e.g. 'main').")
    data_files: list[str] = _f([], "Local JSONL/Parquet/CSV files (gsm8k/hub: a local copy used instead of the hub; "
                                   "file: required). Relative to the working directory.")
    split: str = _f("train", "Split to train on (hub datasets).")
    question_field: str = _f("question", "Field holding the question, or a list of chat messages used as the prompt "
                                         "('auto': question, problem, prompt or messages).")
    question_template: str | None = _f(None, "Question built from several fields instead, e.g. \"{Body} {Question}\".")
    answer_field: str = _f("answer", "Field holding the gold answer or solution ('auto': answer, else solution).")
    gold_format: str = _f("auto", "How the gold answer is written: after '####' (gsm8k), last \\boxed{} (boxed), the whole "
                                  "field (plain), one number with or without a unit ('9 (apples)', '145.0'; number), or "
                                  "guessed per row (auto).",
                          ("auto", "gsm8k", "boxed", "plain", "number"))
    extra_fields: list[str] = _f([], "More columns passed to reward functions as keyword arguments (TRL passes dataset "
                                     "columns to rewards).")
    max_prompt_tokens: int = _f(0, "Skip (and count) rows whose prompt is longer than this many tokens (0 = the model's "
                                   "context minus max_completion_length).")
    synthetic_difficulty: int = _f(1, "Synthetic problems: 1 one operation, 2 two operations, 3 three operations with larger numbers.")
    synthetic_size: int = _f(2000, "Synthetic problems: how many to generate.")
    max_examples: int = _f(0, "Use at most this many training rows after shuffling (0 = all).")
    shuffle: bool = _f(True, "Shuffle rows with the run seed before training.")
    balance_by: str | None = _f(None, "Train in rounds that take one row of each value of this field (e.g. 'operation' "
                                      "for synthetic problems, a subject or level column): every run of K prompts "
                                      "covers the K kinds, each kind capped at the rarest's count. Replaces the "
                                      "shuffle, and turns TRL's own (shuffle_dataset) off so the order is kept. "
                                      "Rows dropped later (a curriculum band, a prompt too long for the model) "
                                      "leave gaps in their rounds. Unset or \"\": off.")


@dataclass
class PromptConfig:
    format: str = _f("reasoning", "Output format asked for in the system prompt.", ("reasoning", "think"))
    system_prompt: str | None = _f(None, "Replace the format's built-in system prompt.")
    one_shot: bool = _f(False, "Show one worked example as an earlier chat turn (helps small models find the format).")


@dataclass
class TrainConfig:
    # Field names match trl.GRPOConfig so they pass straight through.
    learning_rate: float = _f(5e-6, "Peak learning rate.")
    lr_scheduler_type: str = _f("cosine", "Learning-rate schedule.", ("constant", "constant_with_warmup", "linear", "cosine"))
    warmup_ratio: float = _f(0.1, "Fraction of steps spent warming up the learning rate.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(0.1, "Gradient-norm clip.")
    optim: str = _f("adamw_torch", "Optimizer name as transformers knows it (e.g. adamw_torch, paged_adamw_8bit).")
    adam_beta1: float = _f(0.9, "AdamW beta1.")
    adam_beta2: float = _f(0.99, "AdamW beta2.")
    num_generations: int = _f(8, "G: completions sampled per prompt (the group).")
    per_device_train_batch_size: int = _f(8, "Completions per device per micro-batch (TRL counts completions, not prompts).")
    gradient_accumulation_steps: int = _f(1, "Micro-batches per optimizer step.")
    steps_per_generation: int | None = _f(None, "Micro-batches generated at once (default: gradient_accumulation_steps).")
    max_completion_length: int = _f(200, "Most tokens generated per completion; longer ones are truncated.")
    temperature: float = _f(1.0, "Sampling temperature.")
    top_p: float = _f(1.0, "Nucleus sampling threshold.")
    top_k: int = _f(0, "Top-k sampling (0 = off).")
    repetition_penalty: float = _f(1.0, "Repetition penalty during generation.")
    beta: float = _f(0.0, "KL coefficient; > 0 loads a reference model.")
    loss_type: str = _f("dapo", "GRPO loss aggregation.", ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"))
    scale_rewards: str = _f("group", "Divide advantages by the group std ('group'), the batch std ('batch') or not at all ('none').",
                            ("group", "batch", "none"))
    epsilon: float = _f(0.2, "PPO clip range (lower).")
    epsilon_high: float | None = _f(None, "PPO clip range (upper; default: epsilon).")
    num_iterations: int = _f(1, "Optimization passes over each generated batch (mu).")
    mask_truncated_completions: bool = _f(False, "Exclude truncated completions from the loss.")
    max_steps: int = _f(100, "Optimizer steps to train.")
    bf16: bool | None = _f(None, "bf16 mixed precision (default: on for GPUs that support it, off on CPU).")
    seed: int = _f(42, "Seed for data order, sampling and weights init.")
    torch_threads: int = _f(0, "CPU threads for torch (0 = auto: on a CPU, the cores not busy at start, i.e. cores "
                               "minus the cores other work used over 0.3 s (/proc/stat), at least 1; with a GPU, "
                               "torch's default).")
    save_steps: int = _f(0, "Write a checkpoint every N steps (0 = only on command, stop and at the end).")
    save_total_limit: int | None = _f(3, "Keep at most this many checkpoints.")
    save_final: bool = _f(True, "Write a checkpoint when training ends.")
    use_vllm: bool = _f(False, "Generate with vLLM (needs the 'vllm' extra and a GPU).")
    vllm_mode: str = _f("colocate", "vLLM mode.", ("colocate", "server"))
    vllm_gpu_memory_utilization: float = _f(0.3, "Fraction of GPU memory vLLM reserves (colocate).")
    report_to: str | list[str] = _f("none", "Trackers that also get TRL's logs, beside events.jsonl: 'none', or a list of "
                                            "'tensorboard', 'wandb', 'trackio' (the tracker's package must be installed).")
    run_name: str | None = _f(None, "Run name shown in the trackers (default: the run directory's name).")
    project: str | None = _f(None, "Tracker project (W&B: WANDB_PROJECT; trackio: its project; default 'grpo-tui').")
    trl_extra: dict[str, Any] = _f({}, "Any other trl.GRPOConfig field, written directly in [train] (filled by the loader).",
                                   internal=True)
    # the vLLM knobs a 24-80 GB user sets (passed to trl.GRPOConfig under the same names)
    vllm_enable_sleep_mode: bool = _f(False, "Colocate: vLLM frees its weights and KV cache while the trainer runs "
                                             "backward and the optimizer step (less peak memory, slower wake-up).")
    vllm_max_model_length: int | None = _f(None, "Colocate: vLLM's context window (prompt + completion tokens); "
                                                 "smaller means less KV cache reserved (default: the model's).")
    vllm_tensor_parallel_size: int = _f(1, "Colocate: GPUs one vLLM engine spans (must divide the processes per machine).")
    share_prompt_prefix: bool = _f(False, "Encode each distinct prompt once per batch and share its KV cache among its "
                                          "G completions, in generation and in the scoring forward/backward (same "
                                          "log-probs and gradients as TRL's pass; single process, no gradient "
                                          "checkpointing). A CPU lever: 2.2x faster on the cpu-demo, 1.29x slower "
                                          "on an H200 (0.5B, G=16).")
    stop_strings: list[str] = _f([], "End each completion at the first of these strings (e.g. [\"</answer>\"]): "
                                     "generation stops there and the completion ends with the end-of-turn token, "
                                     "so nothing after the answer is generated or trained on; held-out evals stop "
                                     "there too. Transformers generation only.")
    fast_cpu_decode: bool = _f(True, "On the CPU, transformers generation (training and held-out evals) keeps its "
                                      "KV cache in a buffer filled in place instead of copied every token, and runs "
                                      "the wide matmuls (LM head, MLP up/gate) as (W @ x.T).T, which MKL runs 1.1-2.7x "
                                      "faster for a few rows. Same tokens to float rounding; no effect on a GPU.")
    use_cpu: bool = _f(False, "Train on the CPU even when a GPU is visible (`--device cpu`): every other knob stays; "
                              "parts that need CUDA are refused in pre-flight.")


@dataclass
class SftConfig:
    # Stage 1 of the two-stage recipe (engine/train/sft.py): supervised cold start on worked solutions
    # rewritten into the prompt format, loss on completion tokens only; GRPO then starts from it.
    enabled: bool = _f(False, "Run an SFT cold-start stage before GRPO; GRPO starts from its weights (saved in RUN_DIR/sft/model).")
    source: str = _f("auto", "Worked solutions to imitate: GSM8K solutions ('gsm8k', <<calc>> notes stripped), traces of the "
                             "built-in synthetic problems ('synthetic'), or 'auto' (follows [data] source).",
                     ("auto", "gsm8k", "synthetic"))
    data_files: list[str] = _f([], "GSM8K-style JSONL/Parquet files (question, answer with '####'); default: [data] data_files "
                                   "when [data] source = 'gsm8k', else the hub's openai/gsm8k train split.")
    max_examples: int = _f(0, "Use at most this many SFT examples after shuffling (0 = all).")
    epochs: float = _f(2.0, "Passes over the SFT examples.")
    max_steps: int = _f(0, "Stop SFT after this many optimizer steps (0 = run the epochs).")
    learning_rate: float = _f(2e-5, "SFT peak learning rate.")
    lr_scheduler_type: str = _f("cosine", "SFT learning-rate schedule.", ("constant", "constant_with_warmup", "linear", "cosine"))
    warmup_ratio: float = _f(0.03, "Fraction of SFT steps spent warming up.")
    weight_decay: float = _f(0.0, "SFT AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "SFT gradient-norm clip.")
    optim: str = _f("adamw_torch", "SFT optimizer name as transformers knows it.")
    per_device_train_batch_size: int = _f(8, "SFT sequences per device per micro-batch.")
    gradient_accumulation_steps: int = _f(4, "SFT micro-batches per optimizer step (effective batch = the two multiplied).")
    max_length: int = _f(1024, "SFT sequences (prompt + solution) longer than this are truncated.")
    lora: bool = _f(False, "Train the SFT stage as LoRA ([model] lora_* settings) and merge it into the weights before GRPO.")
    save_steps: int = _f(0, "Write an SFT checkpoint every N steps (RUN_DIR/sft/checkpoints; 0 = none). A resumed run continues from it.")
    trl_extra: dict[str, Any] = _f({}, "Any other trl.SFTConfig field, written directly in [sft] (filled by the loader).",
                                   internal=True)


@dataclass
class CurriculumConfig:
    # engine/train/curriculum.py (difficulty pre-pass) and engine/train/dynamic_sampling.py (group filtering).
    prepass: bool = _f(False, "Before GRPO, sample prepass_samples completions per training problem with the starting model "
                              "and keep only problems whose pass rate is in the band (cached in RUN_DIR/curriculum/).")
    prepass_samples: int = _f(8, "Completions sampled per problem in the pre-pass (K).")
    prepass_max_problems: int = _f(256, "Score at most this many training problems (0 = all); training uses the kept ones only.")
    prepass_batch_size: int = _f(0, "Sequences generated at once in the pre-pass (0 = 64 on a GPU, 8 on a CPU).")
    min_pass_rate: float = _f(0.0, "Lower edge of the kept pass-rate band.")
    max_pass_rate: float = _f(1.0, "Upper edge of the kept pass-rate band.")
    exclusive: bool = _f(True, "Band edges excluded (the default band (0, 1) keeps problems solved sometimes but not always).")
    pass_rates_file: str | None = _f(None, "Reuse pass rates cached by an earlier run (its curriculum/pass_rates.jsonl); "
                                           "problems not in it are scored.")
    dynamic_sampling: bool = _f(False, "Drop groups whose G completions are all right or all wrong and refill the batch "
                                       "with groups of fresh prompts (DAPO-style dynamic sampling).")
    dynamic_sampling_criterion: str = _f("correctness", "What makes a group uninformative: identical correctness of the "
                                                        "extracted answers, or identical total reward.", ("correctness", "total"))
    dynamic_sampling_max_extra: float = _f(1.0, "Cap on refill generation per batch, as a multiple of the batch's groups "
                                                "(0 = measure only: report the fractions, drop nothing).")


@dataclass
class EvalConfig:
    # engine/eval/evaluate.py: greedy evaluation on a fixed held-out subset during training, written as `eval` events.
    every_steps: int = _f(0, "Evaluate every N optimizer steps (0 = off); with N > 0 also before the first step and after the last.")
    dataset: str = _f("synthetic", "'synthetic' (held-out built-in problems), 'gsm8k', 'math500', or a JSONL/Parquet file.")
    split: str = _f("test", "Split of a named dataset.")
    limit: int = _f(64, "Evaluate this many items (the same fixed subset every time).")
    max_new_tokens: int = _f(0, "Tokens generated per answer (0 = [train] max_completion_length).")
    batch_size: int = _f(0, "Sequences generated at once (0 = 64 on a GPU, 8 on a CPU).")


@dataclass
class DistributedConfig:
    # More than one process: the engine re-launches itself through `accelerate launch`; rank 0 alone
    # writes the run directory and reads commands, which it broadcasts so every rank acts at the same step.
    num_processes: int = _f(1, "Processes (one per GPU) across all machines; > 1 runs the engine through accelerate launch.")
    backend: str = _f("ddp", "How the model is spread: DDP replicas, DeepSpeed ZeRO-2/ZeRO-3 sharding, or FSDP2.",
                      ("ddp", "deepspeed-zero2", "deepspeed-zero3", "fsdp2"))
    cpu_offload: bool = _f(False, "DeepSpeed/FSDP: keep optimizer states (ZeRO-3/FSDP: also parameters) in CPU memory.")
    num_machines: int = _f(1, "Machines (nodes) in the job; run the same command on each with its machine_rank.")
    machine_rank: int = _f(0, "This machine's rank (0 on the main node).")
    main_process_ip: str = _f("127.0.0.1", "Address of the main node (machine_rank 0), reachable from every node.")
    main_process_port: int = _f(29500, "Port on the main node for the process-group rendezvous.")
    vllm_server_host: str | None = _f(None, "Generate with a separate `trl vllm-serve` at this host (TRL server mode).")
    vllm_server_port: int = _f(8000, "Port of the `trl vllm-serve` server.")
    vllm_group_port: int = _f(51216, "Port for the weight-update group between trainer and `trl vllm-serve`.")
    vllm_server_timeout: float = _f(240.0, "Seconds to wait for the `trl vllm-serve` server to answer before failing.")


@dataclass
class Config:
    preset: PresetInfo = field(default_factory=PresetInfo)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    rewards: dict[str, Any] = field(default_factory=lambda: {"correctness": 1.0, "soft_format": 1.0},
                                    metadata={"help": "Reward name (or 'file.py:function') -> weight, or a table {weight = W, option = ...}."})
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
        return {k: {o: x for o, x in v.items() if o != "weight"} if isinstance(v, dict) else {}
                for k, v in self.rewards.items()}

    @property
    def base_dir(self) -> Path | None:
        """Folder of the preset file, against which user reward files resolve."""
        return Path(self.source).parent if self.source and self.source.endswith(".toml") else None


SECTIONS: dict[str, type] = {"preset": PresetInfo, "model": ModelConfig, "data": DataConfig,
                             "prompt": PromptConfig, "train": TrainConfig, "sft": SftConfig,
                             "curriculum": CurriculumConfig, "eval": EvalConfig, "distributed": DistributedConfig}


# ---------------------------------------------------------------- validation

def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "none"
    if typing.get_origin(tp) is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in tp)
    if typing.get_origin(tp) is dict or tp is dict:
        return "table"
    return {int: "integer", float: "number", str: "string", bool: "true/false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check value against a field type; ints are accepted where floats are expected."""
    if tp is Any:
        return True, value
    if typing.get_origin(tp) is typing.Literal:
        return value in typing.get_args(tp), value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        values = [m.value for m in tp]
        return value in values, value
    if typing.get_origin(tp) is dict or tp is dict:
        return isinstance(value, dict), value
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, v = _coerce(value, arg)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return (value is None or value == "none"), None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if tp is str:
        return isinstance(value, str), value
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            return False, value
        out = []
        for item in value:
            ok, v = _coerce(item, typing.get_args(tp)[0])
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if isinstance(tp, type):  # a class TOML can't write (TRL's Callable or accelerator configs)
        return isinstance(value, tp), value
    return True, value


def _unknown(where: str, key: str, allowed: list[str], allowed_text: str | None = None) -> PresetError:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return PresetError(f"{where}: unknown key '{key}'.{hint} Allowed: {allowed_text or ', '.join(sorted(allowed))}.")


# ---------------------------------------------------------------- TRL passthrough

# [train] and [sft] also take every field of the installed TRL's GRPOConfig / SFTConfig, written directly in the
# section (`importance_sampling_level = "sequence"`) and checked against that dataclass's type hints. trl is
# imported only when a preset names such a field: importing it takes seconds, loading a preset should not.
TRL_PASSTHROUGH: dict[str, str] = {"train": "GRPOConfig", "sft": "SFTConfig"}

_LOGGING = "the engine logs every step (events.jsonl, and the trackers in report_to)"
# TRL fields the engine sets itself, and what to set instead.
ENGINE_OWNED: dict[str, dict[str, str]] = {
    "train": {
        "output_dir": "checkpoints go to RUN_DIR/checkpoints",
        "reward_weights": "give each reward its weight in [rewards]",
        "logging_steps": _LOGGING, "logging_strategy": _LOGGING,
        "disable_tqdm": "the engine prints its own one-line step report",
        "warmup_steps": "use warmup_ratio",
        "data_seed": "use seed",
        "save_strategy": "use save_steps (0 = checkpoints only on command, on stop and at the end)",
        "gradient_checkpointing": "use [model] gradient_checkpointing",
        "resume_from_checkpoint": "use --resume",
        "vllm_server_host": "use [distributed] vllm_server_host",
        "vllm_server_port": "use [distributed] vllm_server_port",
        "vllm_group_port": "use [distributed] vllm_group_port",
        "vllm_server_timeout": "use [distributed] vllm_server_timeout",
    },
    "sft": {
        "output_dir": "the SFT stage writes to RUN_DIR/sft",
        "num_train_epochs": "use epochs",
        "completion_only_loss": "the stage trains on the solution tokens only; that is its purpose",
        "logging_steps": _LOGGING, "logging_strategy": _LOGGING,
        "disable_tqdm": "the engine prints its own step report",
        "warmup_steps": "use warmup_ratio",
        "seed": "set [train] seed (one seed for the run)", "data_seed": "set [train] seed (one seed for the run)",
        "bf16": "set [train] bf16 (one precision for the run)",
        "save_strategy": "use save_steps",
        "gradient_checkpointing": "use [model] gradient_checkpointing",
        "resume_from_checkpoint": "use --resume",
        "report_to": "set [train] report_to (one tracker setting for both stages)",
        "run_name": "set [train] run_name", "project": "set [train] project",
    },
}


@functools.cache
def trl_fields(section: str) -> dict[str, tuple[Any, dataclasses.Field]]:
    """name -> (type hint, field) of the TRL config dataclass behind a section."""
    import trl
    cls = getattr(trl, TRL_PASSTHROUGH[section])
    hints = typing.get_type_hints(cls)
    return {f.name: (hints.get(f.name, Any), f) for f in dataclasses.fields(cls) if f.init}


def _trl_value(section: str, key: str, value: Any, where: str, own: list[str]) -> Any:
    """A value for a TRL field written in [train]/[sft], checked like the project's own fields."""
    if key in ENGINE_OWNED[section]:
        raise PresetError(f"{where}: [{section}] {key} is set by the engine: {ENGINE_OWNED[section][key]}.")
    cls = TRL_PASSTHROUGH[section]
    from grpo_tui.engine.trl_source import config_field_names
    # read from trl's sources: a misspelled key is refused without importing trl, which takes seconds
    names = config_field_names(cls) or trl_fields(section)
    if key not in names:
        raise _unknown(f"{where} [{section}]", key, own + sorted(names),
                       f"the project's fields and every field of trl.{cls} (list them: grpo-tui presets --fields {section})")
    tp, f = trl_fields(section)[key]
    ok, coerced = _coerce(value, tp)
    if not ok:
        help_ = " ".join(str(f.metadata.get("help", "")).split())[:200]
        raise PresetError(f"{where}: [{section}] {key} = {value!r} has the wrong type; expected {_type_name(tp)} "
                          f"(trl.{cls}.{key}: {help_})")
    choices = f.metadata.get("choices")
    if choices and coerced not in list(choices):
        raise PresetError(f"{where}: [{section}] {key} = {value!r} is not allowed; "
                          f"choose one of {', '.join(map(repr, choices))} (trl.{cls}.{key}).")
    return coerced


def _build_section(cls: type, raw: Any, where: str, section: str) -> Any:
    if not isinstance(raw, dict):
        raise PresetError(f"{where}: [{section}] must be a table, got {type(raw).__name__}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields and section in TRL_PASSTHROUGH:
            extra[key] = _trl_value(section, key, value, where, list(fields))
            continue
        if key not in fields:
            raise _unknown(f"{where} [{section}]", key, list(fields))
        ok, coerced = _coerce(value, hints[key])
        if not ok:
            raise PresetError(f"{where}: [{section}] {key} = {value!r} has the wrong type; "
                              f"expected {_type_name(hints[key])}. ({fields[key].metadata['help']})")
        if isinstance(coerced, float) and not math.isfinite(coerced):
            raise PresetError(f"{where}: [{section}] {key} = {value!r} is not a finite number; "
                              f"give a real value. ({fields[key].metadata['help']})")
        choices = fields[key].metadata.get("choices")
        if choices and coerced not in choices:
            raise PresetError(f"{where}: [{section}] {key} = {value!r} is not allowed; "
                              f"choose one of {', '.join(map(repr, choices))}.")
        values[key] = coerced
    if extra:
        values["trl_extra"] = extra
    return cls(**values)


def _check_rewards(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or not raw:
        raise PresetError(f"{where}: [rewards] must be a non-empty table of reward name -> weight.")
    for name, value in raw.items():
        weight = value.get("weight", 1.0) if isinstance(value, dict) else value
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise PresetError(f"{where}: [rewards] {name} = {value!r}: the weight must be a number "
                              f"(or a table with a numeric 'weight').")
    return {k: (dict(v) if isinstance(v, dict) else float(v)) for k, v in raw.items()}


# (section, key) -> (low, high, low inclusive): numbers outside make no sense (or make TRL fail late).
_RANGES: dict[tuple[str, str], tuple[float, float, bool]] = {
    ("train", "learning_rate"): (0.0, 1.0, False), ("train", "temperature"): (0.0, 100.0, False),
    ("train", "top_p"): (0.0, 1.0, False), ("train", "top_k"): (0, math.inf, True),
    ("train", "warmup_ratio"): (0.0, 1.0, True), ("train", "weight_decay"): (0.0, math.inf, True),
    ("train", "max_grad_norm"): (0.0, math.inf, True), ("train", "adam_beta1"): (0.0, 1.0, True),
    ("train", "adam_beta2"): (0.0, 1.0, True), ("train", "repetition_penalty"): (0.0, math.inf, False),
    ("train", "beta"): (0.0, math.inf, True), ("train", "epsilon"): (0.0, math.inf, True),
    ("train", "epsilon_high"): (0.0, math.inf, True), ("train", "save_steps"): (0, math.inf, True),
    ("train", "save_total_limit"): (1, math.inf, True), ("train", "seed"): (0, math.inf, True),
    ("train", "vllm_gpu_memory_utilization"): (0.0, 1.0, False),
    ("model", "lora_r"): (1, math.inf, True), ("model", "lora_alpha"): (0, math.inf, False),
    ("model", "lora_dropout"): (0.0, 1.0, True), ("model", "lora_layers"): (0, math.inf, True),
    ("model", "tiny_hidden_size"): (1, math.inf, True), ("model", "tiny_layers"): (1, math.inf, True),
    ("data", "synthetic_size"): (1, math.inf, True), ("data", "max_examples"): (0, math.inf, True),
    ("sft", "learning_rate"): (0.0, 1.0, False), ("sft", "epochs"): (0.0, math.inf, True),
    ("sft", "max_steps"): (0, math.inf, True), ("sft", "max_examples"): (0, math.inf, True),
    ("sft", "warmup_ratio"): (0.0, 1.0, True), ("sft", "weight_decay"): (0.0, math.inf, True),
    ("sft", "max_grad_norm"): (0.0, math.inf, True), ("sft", "save_steps"): (0, math.inf, True),
    ("curriculum", "prepass_max_problems"): (0, math.inf, True), ("curriculum", "prepass_batch_size"): (0, math.inf, True),
    ("eval", "max_new_tokens"): (0, math.inf, True), ("eval", "batch_size"): (0, math.inf, True),
    ("distributed", "main_process_port"): (1, 65535, True), ("distributed", "vllm_server_port"): (1, 65535, True),
}


def _check_ranges(cfg: Config, where: str) -> None:
    for (section, key), (lo, hi, lo_ok) in _RANGES.items():
        value = getattr(getattr(cfg, section), key, None)
        if value is None or isinstance(value, bool):
            continue
        if not math.isfinite(value) or not (lo <= value if lo_ok else lo < value) or value > hi:
            low = f"[{lo:g}" if lo_ok else f"({lo:g}"
            raise PresetError(f"{where}: [{section}] {key} = {value!r} is out of range; it must be in "
                              f"{low}, {hi:g}].")
    for name, weight in cfg.reward_weights().items():
        if not math.isfinite(weight):
            raise PresetError(f"{where}: [rewards] {name} weight = {weight!r} is not a finite number.")


def validate(cfg: Config) -> None:
    """Combinations no single field can check. Raises PresetError."""
    t, where = cfg.train, cfg.source or "config"
    dist = cfg.distributed
    if dist.num_processes < 1 or dist.num_machines < 1 or dist.num_processes % dist.num_machines:
        raise PresetError(f"{where}: [distributed] num_processes ({dist.num_processes}) must be a positive multiple "
                          f"of num_machines ({dist.num_machines}): the same number of processes on every machine.")
    if not 0 <= dist.machine_rank < dist.num_machines:
        raise PresetError(f"{where}: [distributed] machine_rank = {dist.machine_rank} must be in 0..{dist.num_machines - 1}.")
    if t.torch_threads < 0:
        raise PresetError(f"{where}: [train] torch_threads = {t.torch_threads}: set 0 (auto) or a number of threads.")
    if t.num_generations < 2:
        raise PresetError(f"{where}: [train] num_generations = {t.num_generations}: GRPO needs at least 2 "
                          "completions per prompt to compare; set num_generations >= 2.")
    spg = t.steps_per_generation or t.gradient_accumulation_steps
    gen_batch = t.per_device_train_batch_size * spg
    if gen_batch % t.num_generations:
        raise PresetError(f"{where}: [train] per_device_train_batch_size ({t.per_device_train_batch_size}) x "
                          f"steps_per_generation ({spg}) = {gen_batch} completions is not divisible by "
                          f"num_generations ({t.num_generations}); make the batch a multiple of num_generations.")
    for name in ("max_steps", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "max_completion_length", "num_iterations"):
        if getattr(t, name) < 1:
            raise PresetError(f"{where}: [train] {name} must be at least 1.")
    _check_ranges(cfg, where)
    if dist.vllm_server_host and not (t.use_vllm and t.vllm_mode == "server"):
        raise PresetError(f"{where}: [distributed] vllm_server_host = {dist.vllm_server_host!r} is only used in vLLM "
                          "server mode: set [train] use_vllm = true and vllm_mode = \"server\", or drop the host.")
    m = cfg.model
    if t.share_prompt_prefix and dist.num_processes > 1:
        raise PresetError(f"{where}: [train] share_prompt_prefix = true runs in one process only: its two forwards "
                          "per batch bypass the DDP/DeepSpeed wrapper; set share_prompt_prefix = false or "
                          "[distributed] num_processes = 1.")
    if t.share_prompt_prefix and m.gradient_checkpointing:
        raise PresetError(f"{where}: [train] share_prompt_prefix = true needs the model's KV cache, which gradient "
                          "checkpointing turns off in training; set share_prompt_prefix = false or "
                          "[model] gradient_checkpointing = false.")
    paged = [k for k in ("use_transformers_paged", "use_transformers_continuous_batching") if t.trl_extra.get(k)]
    if t.stop_strings and (t.use_vllm or paged):
        off = " and ".join(f"{k} = false" for k in (["use_vllm"] if t.use_vllm else []) + paged)
        raise PresetError(f"{where}: [train] stop_strings works with transformers generation only; set "
                          f"stop_strings = [] or {off}.")
    if any(not isinstance(x, str) or not x for x in t.stop_strings):
        raise PresetError(f"{where}: [train] stop_strings = {t.stop_strings!r}: each must be a non-empty string.")
    if m.load_in_4bit and not m.lora:
        raise PresetError(f"{where}: [model] load_in_4bit = true needs lora = true (4-bit weights can't be trained directly).")
    d = cfg.data
    if d.balance_by and t.trl_extra.get("shuffle_dataset"):
        raise PresetError(f"{where}: [data] balance_by = {d.balance_by!r} orders the rows in rounds, which [train] "
                          "shuffle_dataset = true would undo; remove one of them.")
    if d.source == "file" and not d.data_files:
        raise PresetError(f"{where}: [data] source = 'file' needs data_files = [\"path.jsonl\", ...].")
    if d.source == "hub" and not d.dataset and not d.data_files:
        raise PresetError(f"{where}: [data] source = 'hub' needs dataset = \"owner/name\" (the hub id).")
    if d.max_prompt_tokens < 0:
        raise PresetError(f"{where}: [data] max_prompt_tokens must be >= 0 (0 = from the model's context).")
    if d.synthetic_difficulty not in (1, 2, 3):
        raise PresetError(f"{where}: [data] synthetic_difficulty must be 1, 2 or 3.")
    s = cfg.sft
    if s.enabled:
        if m.load_in_4bit:
            raise PresetError(f"{where}: [sft] enabled = true with [model] load_in_4bit = true: run the SFT stage in a "
                              "preset without 4-bit, then point [model] name at its RUN_DIR/sft/model.")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_length"):
            if getattr(s, name) < 1:
                raise PresetError(f"{where}: [sft] {name} must be at least 1.")
        if s.epochs <= 0 and s.max_steps < 1:
            raise PresetError(f"{where}: [sft] set epochs > 0 or max_steps >= 1.")
    c = cfg.curriculum
    if not 0.0 <= c.min_pass_rate <= c.max_pass_rate <= 1.0:
        raise PresetError(f"{where}: [curriculum] need 0 <= min_pass_rate <= max_pass_rate <= 1 "
                          f"(got {c.min_pass_rate}, {c.max_pass_rate}).")
    if c.prepass and c.prepass_samples < 2:
        raise PresetError(f"{where}: [curriculum] prepass_samples must be at least 2 to tell easy from hard problems.")
    if c.prepass and c.exclusive and c.min_pass_rate == c.max_pass_rate:
        raise PresetError(f"{where}: [curriculum] an exclusive band ({c.min_pass_rate}, {c.max_pass_rate}) is empty; "
                          "widen it or set exclusive = false.")
    if c.dynamic_sampling_max_extra < 0:
        raise PresetError(f"{where}: [curriculum] dynamic_sampling_max_extra must be >= 0.")
    e = cfg.eval
    if e.every_steps < 0 or e.limit < 1:
        raise PresetError(f"{where}: [eval] every_steps must be >= 0 and limit >= 1.")


# ---------------------------------------------------------------- loading

def preset_dir() -> Path:
    """Shipped presets, from a source checkout or an installed wheel alike."""
    return Path(str(resources.files("grpo_tui.presets")))


def list_presets() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.toml"))


def find_preset(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix == ".toml" or "/" in name_or_path:
        if not p.is_file():
            raise PresetError(f"{name_or_path}: preset file not found.")
        return p.resolve()
    shipped = preset_dir() / f"{name_or_path}.toml"
    if not shipped.is_file():
        names = list_presets()
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise PresetError(f"unknown preset '{name_or_path}'.{hint} Shipped presets: {', '.join(names)}; "
                          "or pass a path to a .toml file.")
    return shipped


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        # rewards replace as a whole: a preset that lists its rewards means exactly those
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "rewards":
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if path in seen:
        raise PresetError(f"{path}: 'extends' forms a cycle.")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{path}: not valid TOML: {e}.") from None
    except OSError as e:
        raise PresetError(f"{path}: can't read: {e.strerror}.") from None
    parent = raw.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise PresetError(f"{path}: 'extends' must be a preset name or path.")
        base_path = find_preset(parent) if "/" not in parent else (path.parent / parent).resolve()
        raw = _deep_merge(_read_toml(base_path, seen + (path,)), raw)
    return raw


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.learning_rate=1e-5' -> (['train', 'learning_rate'], 1e-05). Values are TOML literals; bare words are strings."""
    if "=" not in text:
        raise PresetError(f"--set {text!r}: expected section.key=value, e.g. train.learning_rate=1e-5.")
    key, value = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise PresetError(f"--set {text!r}: the key must be section.key, e.g. train.max_steps or rewards.correctness.")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return parts, parsed


def config_from_dict(raw: dict, where: str) -> Config:
    raw = dict(raw)
    raw.pop("source", None)
    allowed = list(SECTIONS) + ["rewards"]
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in allowed:
            raise _unknown(where, key, allowed)
        if key == "rewards":
            kwargs["rewards"] = _check_rewards(value, where)
        else:
            kwargs[key] = _build_section(SECTIONS[key], value, where, key)
    cfg = Config(**kwargs, source=where)
    validate(cfg)
    return cfg


def load_config(preset: str, overrides: list[str] = ()) -> Config:
    """Load a preset by name or path, apply --set overrides, validate. Raises PresetError."""
    path = find_preset(preset)
    raw = _read_toml(path)
    for text in overrides:
        (section, key), value = parse_override(text)
        if section not in SECTIONS and section != "rewards":
            raise _unknown(f"--set {text}", section, list(SECTIONS) + ["rewards"])
        raw.setdefault(section, {})[key] = value
    raw.setdefault("preset", {}).setdefault("name", path.stem)
    try:
        return config_from_dict(raw, str(path))
    except PresetError as e:
        _blame_override(overrides, e, str(path))
        raise


def _blame_override(overrides: list[str], error: PresetError, where: str) -> None:
    """A bad value given with --set is the override's fault, not the preset file's: say so."""
    for text in overrides:
        (section, key), value = parse_override(text)
        if section in SECTIONS:
            _build_section(SECTIONS[section], {key: value}, f"--set {text}", section)  # raises, naming the override
        if f"[{section}] {key}" in str(error):
            raise PresetError(f"--set {text}: {str(error).removeprefix(where + ': ')}") from None



def load_resolved(path: Path, overrides: list[str] = ()) -> Config:
    """Read a run directory's config.json back (for --resume), with overrides."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PresetError(f"{path}: can't read the run's config: {e}.") from None
    source = raw.pop("source", str(path))
    for text in overrides:
        (section, key), value = parse_override(text)
        raw.setdefault(section, {})[key] = value
    cfg = config_from_dict(raw, str(path))
    cfg.source = source
    return cfg


def describe_fields() -> list[tuple[str, str, str, str]]:
    """(section.key, type, default, help) for every knob; used by docs and `grpo-tui presets --fields`."""
    rows = []
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"{section}.{f.name}", _type_name(hints[f.name]), repr(default), f.metadata["help"]))
    return rows


def describe_all_fields(section: str | None = None) -> list[tuple[str, str, str, str, str]]:
    """(section.key, type, default, help, origin) for the project's knobs and, in [train]/[sft], every field of
    the installed TRL's GRPOConfig/SFTConfig the engine does not set itself. Origin says where a knob comes from."""
    rows = [(*r, "grpo-tui") for r in describe_fields() if section in (None, r[0].split(".")[0])]
    for sec, cls in TRL_PASSTHROUGH.items():
        if section not in (None, sec):
            continue
        own = {r[0] for r in rows}
        for name, (tp, f) in sorted(trl_fields(sec).items()):
            key = f"{sec}.{name}"
            if key in own or name in ENGINE_OWNED[sec]:
                continue
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            help_ = " ".join(str(f.metadata.get("help", "")).split())
            rows.append((key, _type_name(tp), repr(default), help_, f"trl.{cls}"))
    return rows
