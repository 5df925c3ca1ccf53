"""Every shipped preset runs one GRPO step on the CPU through the real engine.

Each preset in presets/*.toml (found automatically; the test id is its name) is run as
`python -m grpo_tui.engine train --device cpu` (engine.run.main with those arguments, the presets one after
another in one child process, so the suite pays torch/TRL's import time once) with every knob as shipped (LoRA
and its targets, gradient checkpointing, dtype, beta and the reference model, loss type,
the SFT stage, dynamic sampling, eval, rewards, chat_template_kwargs) on a mini model of its
architecture, built offline: the published model's class (Qwen2ForCausalLM for Qwen2.5,
Qwen3ForCausalLM for Qwen3, with its per-head q/k norms and a head_dim wider than
hidden/heads) with its tied/untied embeddings (and the small test tokenizer,
engine/small_tokenizer.py), the tiny random Llama for the SmolLM2 ones. What shrinks is size,
not knobs: max_steps 1, 16 completion tokens, a 64-row GSM8K-format file instead of the hub,
SFT 1 step, eval 4 items. All presets run in the default suite.

Only parts that need CUDA are replaced, and the replacements are not chosen here: they
are the `--set` fixes the engine's own pre-flight names for a `--device cpu` run
(vLLM, 4-bit, bitsandbytes optimizers, DeepSpeed). For each preset that needs one,
`test_cuda_parts_stop_in_preflight` shows that without the replacement the engine
stops in pre-flight, naming the key, before loading a model or creating the run dir.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support.paths import REPO
from support.processes import run_cli, run_engine

from grpo_tui.engine.config import list_presets, load_config
from grpo_tui.engine.gpu import visible_gpus
from grpo_tui.engine.plan.memory import lookup_arch
from grpo_tui.engine.preflight import Problem, problems

PRESETS = list_presets()
OFFLINE_MODELS = ("smollm2-135m-instruct", "tiny-random")
# Mini models per published class; Qwen3's heads are wider than hidden / heads, as in the real ones.
MINI_HEAD_DIM = {"qwen2": None, "qwen3": 32}


def cuda_parts(preset: str) -> list[Problem]:
    """What pre-flight refuses in `preset` on the CPU (packages as installed here), each with its --set fix."""
    cfg = load_config(preset, ["train.use_cpu=true"])
    return [p for p in problems(cfg, gpu=None, reach=lambda r, t: None) if p.cpu_fix]


def cpu_replacements(preset: str) -> list[str]:
    return [p.cpu_fix for p in cuda_parts(preset)]


@pytest.fixture(scope="session")
def smoke_env(tmp_path_factory) -> dict:
    """Mini models (tied and untied Qwen2 and Qwen3) and GSM8K-format train/test files, all built offline."""
    from grpo_tui.engine.data.synthetic import generate
    from grpo_tui.engine.models import save_random_model

    root = tmp_path_factory.mktemp("smoke")
    models = {
        (kind, tied): str(
            save_random_model(
                root / f"{kind}-mini-{'tied' if tied else 'untied'}",
                model_type=kind,
                hidden=64,
                layers=2,
                heads=4,
                kv_heads=2,
                intermediate=128,
                tied=tied,
                head_dim=MINI_HEAD_DIM[kind],
                small_tokenizer=True,
                log=lambda m: None,
            )
        )
        for kind in MINI_HEAD_DIM
        for tied in (True, False)
    }
    data = root / "data" / "gsm8k"
    data.mkdir(parents=True)
    for split, seed in (("train", 1), ("test", 2)):
        rows = [
            {"question": r["question"], "answer": f"Work it out <<1+1=2>> step by step.\n#### {r['answer']}"}
            for r in generate(64, 1, seed)
        ]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "models": models, "gsm8k": data}


def smoke_overrides(preset: str, env: dict) -> list[str]:
    """Smaller sizes, same knobs: the model's architecture in miniature, local data, one step."""
    cfg = load_config(preset)
    if cfg.model.name in OFFLINE_MODELS:
        model = "tiny-random"  # the SmolLM2 architecture (Llama, tied) with random weights
    else:
        arch = lookup_arch(cfg.model.name)
        assert arch is not None, f"{preset}: no published config known for {cfg.model.name}"
        assert arch.model_type in MINI_HEAD_DIM, f"{preset}: no mini model of class {arch.model_type}"
        model = env["models"][arch.model_type, arch.tied]
    out = [f"model.name={model}", "train.max_steps=1", "train.max_completion_length=16"]
    if cfg.data.source == "gsm8k":
        out += [f'data.data_files=["{env["gsm8k"] / "train.jsonl"}"]']
    elif cfg.data.source == "hub":
        # a local copy of the hub dataset (data_files replaces the download), in its own field names
        from grpo_tui.engine.data.synthetic import generate

        local = env["root"] / f"hub-{preset}.jsonl"
        rows = [
            {cfg.data.question_field: r["question"], cfg.data.answer_field: str(r["answer"])}
            for r in generate(64, 1, 3)
        ]
        local.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        out += [f'data.data_files=["{local}"]']
    out += ["data.max_examples=64"]
    if cfg.sft.enabled:
        out += ["sft.max_steps=1", "sft.max_examples=32"]
    if cfg.eval.every_steps > 0:
        out += ["eval.limit=4", "eval.max_new_tokens=16"]
    if cfg.curriculum.prepass:
        out += ["curriculum.prepass_max_problems=8"]
    return out


def _engine(preset: str, run_dir: Path, sets: list[str], timeout: float = 600):
    args = ["-P", "-m", "grpo_tui.engine", "train", "--device", "cpu", "--preset", preset, "--run-dir", str(run_dir)]
    for s in sets:
        args += ["--set", s]
    return run_cli(args, timeout=timeout)


# One child process runs every preset's engine in turn (engine.run.main, the function behind
# `python -m grpo_tui.engine train`); it writes each exit code as soon as that run ends.
DRIVER = """
import json, sys, time
from grpo_tui.engine.run import main
jobs = json.loads(open(sys.argv[1]).read())
results = {}
for job in jobs:
    t0 = time.time()
    try:
        code = main(job["argv"])
    except SystemExit as e:
        code = e.code
    except BaseException as e:  # noqa: BLE001 - reported per preset
        code = repr(e)
    results[job["preset"]] = {"code": code, "seconds": round(time.time() - t0, 1)}
    open(sys.argv[2], "w").write(json.dumps(results))
"""


@pytest.fixture(scope="session")
def smoke_runs(smoke_env, tmp_path_factory, request) -> dict:
    """The one-step run of every preset selected (-k): {preset: {"run_dir", "code", "seconds", "output"}}."""
    import os
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("smoke-runs")
    selected = {
        item.callspec.params["preset"]
        for item in request.session.items
        if item.originalname == "test_preset_runs_one_step_on_cpu"
    }
    jobs = []
    for preset in [p for p in PRESETS if p in selected]:
        argv = ["train", "--device", "cpu", "--preset", preset, "--run-dir", str(root / preset)]
        for s in smoke_overrides(preset, smoke_env) + cpu_replacements(preset):
            argv += ["--set", s]
        jobs.append({"preset": preset, "argv": argv})
    (root / "jobs.json").write_text(json.dumps(jobs))
    env = dict(os.environ, PYTHONUNBUFFERED="1", GRPO_TUI_DATA=str(smoke_env["gsm8k"].parent))
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(root / "jobs.json"), str(root / "results.json")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=1800,
    )
    results = json.loads((root / "results.json").read_text()) if (root / "results.json").exists() else {}
    out = {}
    for preset in PRESETS:
        r = results.get(preset, {"code": f"not run (driver exit {proc.returncode})", "seconds": None})
        log = root / preset / "engine.log"
        output = log.read_text(errors="replace")[-3000:] if log.exists() else proc.stderr[-3000:]
        out[preset] = {"run_dir": root / preset, "output": output, **r}
    # seconds per preset (shown with `pytest -s`): what docs/presets.md quotes
    print("\n" + "\n".join(f"smoke {p}: {r['seconds']} s" for p, r in results.items()))
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_runs_one_step_on_cpu(preset, smoke_runs):
    r = smoke_runs[preset]
    run_dir = r["run_dir"]
    assert r["code"] == 0, f"{preset} failed ({r['code']}) after {r['seconds']}s:\n{r['output']}"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1]
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "finished"
    cfg = json.loads((run_dir / "config.json").read_text())
    shipped = load_config(preset)
    # the knobs that define the preset survive the smoke overrides
    for section, key in (
        ("model", "lora"),
        ("model", "lora_target_modules"),
        ("model", "gradient_checkpointing"),
        ("model", "dtype"),
        ("train", "beta"),
        ("train", "loss_type"),
        ("train", "num_generations"),
        ("train", "per_device_train_batch_size"),
        ("train", "gradient_accumulation_steps"),
        ("sft", "enabled"),
        ("curriculum", "dynamic_sampling"),
        ("eval", "every_steps"),
    ):
        assert cfg[section][key] == getattr(getattr(shipped, section), key), (section, key)
    assert cfg["train"]["use_cpu"] is True
    for key, value in shipped.train.trl_extra.items():  # TRL fields written in [train], chat_template_kwargs too
        assert cfg["train"][key] == value, key
    model_ev = next(e for e in events if e["type"] == "model")
    if shipped.train.beta > 0 and not shipped.model.lora:
        # the KL reference model: the SFT weights after an SFT stage, else the starting model
        expected = (run_dir / "sft" / "model").resolve() if shipped.sft.enabled else Path(model_ev["path"])
        assert model_ev["reference"] == str(expected)
    else:
        assert model_ev["reference"] is None
    if shipped.sft.enabled:
        assert any(e["type"] == "stage" and e.get("stage") == "sft" and e.get("status") == "finished" for e in events)
    if shipped.eval.every_steps > 0:
        assert any(e["type"] == "eval" for e in events)
    if shipped.curriculum.dynamic_sampling:
        assert any(k.startswith("dynamic_sampling/") for k in steps[0]["metrics"]), steps[0]["metrics"]


@pytest.mark.parametrize("preset", [p for p in PRESETS if cpu_replacements(p)])
def test_cuda_parts_stop_in_preflight(preset, smoke_env, tmp_path):
    """Without the replacements, --device cpu stops in pre-flight naming each CUDA-only part; nothing is written."""
    run_dir = tmp_path / "run"
    t0 = time.time()
    proc = _engine(preset, run_dir, smoke_overrides(preset, smoke_env))
    took = time.time() - t0
    assert proc.returncode == 2, proc.stderr[-2000:]
    for part in cuda_parts(preset):
        # the key, what needs CUDA, the package when it is missing here, and the --set that replaces it
        assert str(part) in proc.stderr, (str(part), proc.stderr)
        assert f"--set {part.cpu_fix}" in proc.stderr
    assert "pre-flight" in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dir.exists()
    assert "loading" not in proc.stdout.lower()  # never got as far as the model
    assert took < 5, took  # pre-flight imports neither torch nor TRL (measured 0.2 s)


@pytest.mark.skipif(visible_gpus() is not None, reason="this machine has a GPU")
def test_gpu_preset_without_gpu_exits_2_fast(tmp_path):
    run_dir = tmp_path / "run"
    t0 = time.time()
    proc = run_engine(["--preset", "gpu24-qwen05b-g16", "--run-dir", str(run_dir)], timeout=60)
    took = time.time() - t0
    assert proc.returncode == 2
    assert "[preset] device" in proc.stderr and "CUDA GPU" in proc.stderr and "--device cpu" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()
    assert took < 5, took  # the bound for pre-flight (measured 0.2 s: nothing heavy is imported)


def test_every_preset_is_smoke_tested():
    """New presets are picked up by file name; the list is not maintained by hand."""
    assert sorted(p.stem for p in (REPO / "presets").glob("*.toml")) == PRESETS


def test_two_stage_kl_reference_is_the_sft_model_fresh_and_resumed(tmp_path):
    """TRL rebuilds the reference from config._name_or_path: it must name RUN_DIR/sft/model, not the base model."""
    run_dir = tmp_path / "run"
    sets = ["sft.enabled=true", "sft.max_steps=1", "sft.max_examples=16", "train.beta=0.04", "train.max_steps=1"]
    args = ["-P", "-m", "grpo_tui.engine", "train", "--run-dir", str(run_dir)]
    first = run_cli(args + ["--preset", "tiny"] + [x for s in sets for x in ("--set", s)], timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    again = run_cli(args + ["--resume", "--max-steps", "2"], timeout=600)  # the run's own config.json
    assert again.returncode == 0, again.stderr[-2000:]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    refs = [e["reference"] for e in events if e["type"] == "model"]
    sft_model = str((run_dir / "sft" / "model").resolve())
    assert refs == [sft_model, sft_model]
    assert [e["resumed"] for e in events if e["type"] == "run_start"] == [False, True]
