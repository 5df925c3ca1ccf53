"""Pre-flight: what a preset needs from this machine, checked before any download or model load.

Runs in `python -m grpo_tui.engine train` right after the preset is parsed, before the run
directory exists, and costs well under 5 s: optional packages are looked up with
`importlib.util.find_spec` (never imported), the GPU through NVML (torch only when
NVML can't answer and a GPU device node exists), the model and datasets in the
local paths and the Hugging Face cache (the hub is asked only when not offline,
with a short timeout). Every problem names the preset key and the fix; all
problems are reported together, as one PresetError (exit code 2).

There is no silent fallback: a preset that asks for vLLM, 4-bit, an 8-bit/paged
optimizer, DeepSpeed or flash-attention gets it or does not start.
"""

from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from grpo_tui.engine.config import Config, PresetError
from grpo_tui.engine.gpu import Gpus, visible_gpus
from grpo_tui.engine.offline_models import BUILTIN_MODELS, SMOLLM2, smollm2_missing
from grpo_tui.engine.plan.memory import estimate
from grpo_tui.rundir.layout import RunDir

HUB_TIMEOUT_S = 3.0
VLLM_PIP = "pip install 'grpo-tui[vllm]'"
QUANT_PIP = "pip install 'grpo-tui[quant]'"
DEEPSPEED_PIP = "pip install deepspeed"
FLASH_ATTN_PIP = "pip install flash-attn --no-build-isolation"
GSM8K_HUB = "openai/gsm8k"
MATH500_HUB = "HuggingFaceH4/MATH-500"


@dataclass(frozen=True)
class Problem:
    key: str  # the preset key at fault, e.g. "[train] use_vllm"
    message: str  # what is wrong and the fix
    cpu_fix: str | None = None  # the --set that replaces a CUDA-only part for a --device cpu run

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def installed(module: str) -> bool:
    """True if `module` can be imported; looks it up without importing it (vllm takes seconds to import)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def is_bnb_optimizer(optim: str) -> bool:
    """transformers optimizer names that run on bitsandbytes (8-bit/paged AdamW, Lion, RMSprop, AdEMAMix)."""
    o = optim.lower()
    if o.startswith("adamw_torch_"):  # adamw_torch_4bit / _8bit are torchao's
        return False
    return "bnb" in o or "8bit" in o or o.startswith(("paged_", "lion_", "ademamix"))


# ------------------------------------------------------------------ GPU


def check_gpu(cfg: Config, gpu: Gpus | None) -> list[Problem]:
    if cfg.preset.device != "gpu" or cfg.train.use_cpu:
        return []
    name = cfg.preset.name or Path(cfg.source).stem
    if gpu is None:
        return [
            Problem(
                "[preset] device",
                f"'gpu': preset {name} is made for a CUDA GPU and none is visible "
                "(NVML/torch.cuda found no device). Run it on a GPU machine, pick a CPU preset "
                "(--preset cpu-demo), or run this preset on the CPU anyway for a smoke test with "
                "--device cpu (slow: real model sizes on a CPU).",
            )
        ]
    count, total = gpu.count, gpu.total_gib
    out = []
    per_machine = cfg.distributed.num_processes // max(1, cfg.distributed.num_machines)
    if per_machine > count:
        out.append(
            Problem(
                "[distributed] num_processes",
                f"{cfg.distributed.num_processes} processes over {cfg.distributed.num_machines} machine(s) "
                f"need {per_machine} GPUs here, and {count} is visible; lower num_processes "
                f"(--set distributed.num_processes={count * cfg.distributed.num_machines}) or run on a "
                "machine with more GPUs.",
            )
        )
    est = estimate(cfg, total)
    if est.peak_gb is not None and est.peak_gb > total:
        out.append(
            Problem(
                "[preset] min_gpu_gb",
                f"preset {name} needs about {est.peak_gb:.1f} GB (estimate) and this GPU has "
                f"{total:.1f} GB. See what to change: grpo-tui presets --gpu-mem {total:.0f} --explain "
                f"{name}; or choose a preset for this card (grpo-tui presets).",
            )
        )
    return out


# ------------------------------------------------------------- packages


def check_packages(cfg: Config, find: Callable[[str], bool] | None = None, on_cpu: bool | None = None) -> list[Problem]:
    """Every optional package the preset needs, and every part that needs CUDA when the run is on the CPU.

    on_cpu: the run will train on the CPU (default: only when pinned there with [train] use_cpu).
    """
    out: list[Problem] = []
    find = find or installed
    on_cpu = cfg.train.use_cpu if on_cpu is None else on_cpu
    t, m, d = cfg.train, cfg.model, cfg.distributed

    def need(key: str, module: str, pip: str, what: str, cpu_override: str, alt: str = "") -> None:
        missing = not find(module)
        if on_cpu:
            pkg = f" (and the {module} package)" if missing else ""
            out.append(
                Problem(
                    key,
                    f"{what} needs a CUDA GPU{pkg}; on the CPU (--device cpu) replace it: --set {cpu_override}{alt}.",
                    cpu_override,
                )
            )
        elif missing:
            out.append(Problem(key, f"{what} needs the {module} package: {pip}."))

    if t.use_vllm and t.vllm_mode == "colocate":
        need("[train] use_vllm", "vllm", VLLM_PIP, "colocated vLLM generation", "train.use_vllm=false")
    elif t.use_vllm and not find("vllm"):
        # server mode: TRL imports vllm's client pieces in the trainer process too
        out.append(
            Problem("[train] use_vllm", f"vLLM server mode needs the vllm package in this process too: {VLLM_PIP}.")
        )
    if m.load_in_4bit:
        need("[model] load_in_4bit", "bitsandbytes", QUANT_PIP, "4-bit NF4 loading", "model.load_in_4bit=false")
    if is_bnb_optimizer(t.optim):
        need("[train] optim", "bitsandbytes", QUANT_PIP, f"optimizer {t.optim!r}", "train.optim=adamw_torch")
    if cfg.sft.enabled and is_bnb_optimizer(cfg.sft.optim):
        need("[sft] optim", "bitsandbytes", QUANT_PIP, f"optimizer {cfg.sft.optim!r}", "sft.optim=adamw_torch")
    if d.num_processes > 1 and d.backend.startswith("deepspeed"):
        need(
            "[distributed] backend",
            "deepspeed",
            DEEPSPEED_PIP,
            f"backend {d.backend!r}",
            "distributed.num_processes=1",
            " (or distributed.backend=ddp to keep several CPU processes)",
        )
    attn = m.attn_implementation or ""
    if attn.startswith("flash_attention"):
        module = "flash_attn_interface" if attn == "flash_attention_3" else "flash_attn"
        need(
            "[model] attn_implementation",
            module,
            FLASH_ATTN_PIP,
            f"attention kernel {attn!r}",
            "model.attn_implementation=sdpa",
        )
    return out


def missing_packages(cfg: Config, find: Callable[[str], bool] | None = None) -> list[Problem]:
    """check_packages as if on a GPU: only what pip can fix (used to pick a preset automatically)."""
    return check_packages(cfg, find, on_cpu=False)


# ------------------------------------------------------ model and data


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def hub_cached(repo: str, repo_type: str = "model") -> bool:
    """The repo has a snapshot in the local Hugging Face cache (what transformers/datasets use offline)."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo.replace('/', '--')}" / "snapshots"
    if folder.is_dir() and any(folder.iterdir()):
        return True
    if repo_type == "dataset":  # datasets' own processed cache also serves offline loads
        base = Path(os.environ.get("HF_DATASETS_CACHE") or Path(constants.HF_HOME) / "datasets")
        return (base / repo.replace("/", "___")).is_dir()
    return False


def hub_reachable(repo: str, repo_type: str = "model", timeout: float = HUB_TIMEOUT_S) -> str | None:
    """None if the hub answers for `repo`, else why not (one short request)."""
    from huggingface_hub import constants

    url = f"{constants.ENDPOINT}/api/{repo_type}s/{repo}"
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # a small JSON answer; proxies from the environment
            return None
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return f"the hub has no {repo_type} {repo!r}"
        return None  # 401/403 (gated, needs a token) and the like: let the loader report it with its details
    except (urllib.error.URLError, OSError) as e:
        return f"can't reach {constants.ENDPOINT} ({getattr(e, 'reason', e)})"


def _hub_problem(
    key: str, repo: str, repo_type: str, fix: str, reach: Callable[[str, str], str | None]
) -> Problem | None:
    if hub_cached(repo, repo_type):
        return None
    if hub_offline():
        return Problem(
            key,
            f"{repo_type} {repo!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set, "
            f"so it can't be downloaded. {fix}",
        )
    why = reach(repo, repo_type)
    if why:
        return Problem(key, f"{repo_type} {repo!r}: {why}. {fix}")
    return None


def check_sources(
    cfg: Config,
    run_root: Path | None = None,
    reach: Callable[[str, str], str | None] = hub_reachable,
    find: Callable[[str], bool] | None = None,
) -> list[Problem]:
    """The model and every dataset the run reads exist locally or can be fetched now.

    find: looks a package up without importing it (default `installed`), for the offline demo model's.
    """
    out: list[Problem] = []
    name = cfg.model.name
    sft_done = run_root is not None and RunDir(Path(run_root)).sft_done()
    if name == SMOLLM2 and not sft_done:
        why = smollm2_missing(find or installed)
        if why:
            out.append(Problem("[model] name", f"{why}; or train the tiny random model offline (--preset tiny)."))
    elif name not in BUILTIN_MODELS and not sft_done:
        path = Path(name).expanduser()
        if name.startswith((".", "/", "~")) or path.exists():
            if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
                out.append(
                    Problem(
                        "[model] name",
                        f"{name!r} is not a directory with a saved model (config.json); "
                        "point it at a model directory or a hub id.",
                    )
                )
        else:
            p = _hub_problem(
                "[model] name",
                name,
                "model",
                f"Download it once where the hub is reachable (`hf download {name}`), or set "
                "[model] name to a local model directory (--set model.name=/path).",
                reach,
            )
            if p:
                out.append(p)
    d = cfg.data
    if d.source == "gsm8k" and not d.data_files:
        p = _hub_problem(
            "[data] data_files",
            GSM8K_HUB,
            "dataset",
            "Set [data] data_files to a local copy of GSM8K (e.g. --set "
            "'data.data_files=[\"gsm8k/train.jsonl\"]'; fields question, answer with '####').",
            reach,
        )
        if p:
            out.append(p)
    s = cfg.sft
    if s.enabled and not sft_done and not s.data_files:
        from grpo_tui.engine.train.sft import sft_source

        if sft_source(cfg) == "gsm8k" and not (d.source == "gsm8k" and d.data_files):
            p = _hub_problem(
                "[sft] data_files",
                GSM8K_HUB,
                "dataset",
                "Set [sft] data_files (or [data] data_files) to local GSM8K-style files.",
                reach,
            )
            if p:
                out.append(p)
    e = cfg.eval
    if e.every_steps > 0 and e.dataset in ("gsm8k", "math500"):
        from grpo_tui.engine.eval.data import DATA_DIRS_ENV, local_copy

        if local_copy(e.dataset, e.split) is None:
            repo = GSM8K_HUB if e.dataset == "gsm8k" else MATH500_HUB
            p = _hub_problem(
                "[eval] dataset",
                repo,
                "dataset",
                f"Put a local copy at data/{e.dataset}/{e.split}.jsonl (or a directory named in "
                f"{DATA_DIRS_ENV}), or set [eval] dataset to a .jsonl file.",
                reach,
            )
            if p:
                out.append(p)
    return out


# ------------------------------------------------------------------ all


def problems(
    cfg: Config,
    run_root: Path | None = None,
    *,
    gpu: Gpus | None | str = "detect",
    find: Callable[[str], bool] | None = None,
    reach: Callable[[str, str], str | None] = hub_reachable,
) -> list[Problem]:
    if gpu == "detect":
        gpu = None if cfg.train.use_cpu else visible_gpus()
    # A GPU preset without a GPU is reported once, by check_gpu; any other preset then runs on the CPU.
    on_cpu = cfg.train.use_cpu or (gpu is None and cfg.preset.device != "gpu")
    return [*check_gpu(cfg, gpu), *check_packages(cfg, find, on_cpu), *check_sources(cfg, run_root, reach, find)]


def check(cfg: Config, run_root: Path | None = None, **kw) -> None:
    """Raise PresetError listing every problem (exit code 2 in the engine), or return."""
    found = problems(cfg, run_root, **kw)
    if found:
        where = cfg.source or "preset"
        lines = "\n".join(f"  - {p}" for p in found)
        raise PresetError(f"{where}: pre-flight found {len(found)} problem(s) before loading anything:\n{lines}")
