"""SFT cold start: examples in the target format, prompt-masked labels, and a two-stage run
(SFT, then GRPO with dynamic sampling and periodic evaluation) of the tiny random model, read back from
its run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.paths import FIXTURES, SHARED_DATA
from support.processes import run_engine, write_preset

from grpo_tui.engine.config import PresetError, load_config
from grpo_tui.engine.rewards import extract_answer, is_correct
from grpo_tui.engine.train.sft import (
    build_sft_rows,
    gsm8k_solution,
    run_sft_stage,
    starting_model,
    strip_calc,
    synthetic_trace,
    target_text,
)
from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.event_writer import EventWriter
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.state import summarize

GSM8K_ROW = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips "
    "in May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
    "altogether in April and May.\n#### 72",
}


# ------------------------------------------------------------------------- examples


def test_gsm8k_solution_strips_calculator_notes():
    assert strip_calc("48/2 = <<48/2=24>>24 clips") == "48/2 = 24 clips"
    steps, gold = gsm8k_solution(GSM8K_ROW["answer"])
    assert gold == "72" and "<<" not in steps and ">>" not in steps and "####" not in steps
    assert steps.splitlines() == [
        "Natalia sold 48/2 = 24 clips in May.",
        "Natalia sold 48+24 = 72 clips altogether in April and May.",
    ]
    assert gsm8k_solution("no gold here") is None


@pytest.mark.parametrize("fmt", ["reasoning", "think"])
def test_targets_score_as_correct_in_their_own_format(fmt):
    steps, gold = gsm8k_solution(GSM8K_ROW["answer"])
    text = target_text(steps, gold, fmt)
    assert is_correct(extract_answer(text, fmt), "72")
    assert (
        (text.startswith("<think>\n") and text.endswith("\\boxed{72}"))
        if fmt == "think"
        else (text.startswith("<reasoning>\n") and text.endswith("<answer>\n72\n</answer>"))
    )


@pytest.mark.parametrize("difficulty", [1, 2, 3])
def test_synthetic_traces_work_out_the_answer(difficulty):
    from grpo_tui.engine.data.synthetic import generate

    problems = generate(300, difficulty, 5)
    traces = [synthetic_trace(p["question"], p["answer"]) for p in problems]
    assert all(t is not None for t in traces)
    assert all(t.splitlines()[-1].endswith(f"= {p['answer']}.") for t, p in zip(traces, problems))
    assert synthetic_trace("Ava has 3 apples. Then something odd happens. How many?", "3") is None


def test_sft_rows_use_the_grpo_prompt_and_format():
    cfg = load_config("cpu-demo", ["sft.enabled=true", "sft.max_examples=5"])
    rows, report = build_sft_rows(cfg)
    assert report["source"] == "synthetic" and report["examples"] == 5
    prompt = rows[0]["prompt"]
    assert prompt[0]["role"] == "system" and "<reasoning>" in prompt[0]["content"]
    assert [m["role"] for m in prompt] == ["system", "user", "assistant", "user"]  # cpu-demo's one-shot turn
    assert rows[0]["completion"][0]["content"].startswith("<reasoning>\n")


@pytest.mark.skipif(not (SHARED_DATA / "gsm8k" / "train.jsonl").exists(), reason="needs ../shared/data")
def test_sft_rows_from_local_gsm8k_file():
    cfg = load_config(
        "tiny",
        [
            "sft.enabled=true",
            "sft.source=gsm8k",
            "prompt.format=think",
            "sft.max_examples=50",
            f"sft.data_files=['{SHARED_DATA / 'gsm8k' / 'train.jsonl'}']",
        ],
    )
    rows, report = build_sft_rows(cfg)
    assert report["examples"] == 50 and report["skipped"] == 0
    assert all("<<" not in r["completion"][0]["content"] and "\\boxed{" in r["completion"][0]["content"] for r in rows)


def test_sft_preset_checks():
    with pytest.raises(PresetError, match="load_in_4bit"):
        load_config("gpu16-qwen7b-qlora", ["sft.enabled=true"])
    cfg = load_config("gpu80-qwen7b-r1-grpo")
    s = cfg.sft
    assert s.enabled and not s.lora and s.epochs == 2 and s.learning_rate == 2e-5 and s.lr_scheduler_type == "cosine"
    assert s.per_device_train_batch_size * s.gradient_accumulation_steps == 32


# ------------------------------------------------------------------------ the labels


def test_sft_loss_masks_prompt_tokens():
    """Every prompt token has label -100; every completion token keeps its id (what the loss is computed on)."""
    import tempfile

    from datasets import Dataset
    from trl import SFTTrainer

    from grpo_tui.engine.models import load_model
    from grpo_tui.engine.train.sft import sft_args

    cfg = load_config("tiny", ["sft.enabled=true", "sft.max_examples=4", "sft.max_length=512"])
    rows, _ = build_sft_rows(cfg)
    loaded = load_model(cfg.model, "cpu", log=lambda m: None)
    with tempfile.TemporaryDirectory() as d:
        trainer = SFTTrainer(
            model=loaded.model,
            args=sft_args(cfg, Path(d), "cpu"),
            train_dataset=Dataset.from_list(rows),
            processing_class=loaded.tokenizer,
        )
        tok = loaded.tokenizer
        for row, ex in zip(rows, trainer.train_dataset):
            ids, labels = ex["input_ids"], ex["labels"]
            prompt_ids = tok.apply_chat_template(row["prompt"], tokenize=True, add_generation_prompt=True)
            if hasattr(prompt_ids, "keys"):  # a BatchEncoding
                prompt_ids = prompt_ids["input_ids"]
            n = len(prompt_ids)
            assert ids[:n] == list(prompt_ids), "the prompt is a prefix of the training sequence"
            assert all(x == -100 for x in labels[:n]), "prompt tokens are masked"
            assert labels[n:] == ids[n:] and len(ids) > n, "completion tokens are trained on"
            trained = tok.decode(labels[n:])
            assert trained.startswith(row["completion"][0]["content"])
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
        assert (batch["labels"] == -100).sum() > 0 and (batch["labels"] != -100).sum() > 0
        assert ((batch["labels"] == -100) | (batch["labels"] == batch["input_ids"])).all()


# ------------------------------------------------------------------ resume/switch reuse


def test_finished_sft_stage_is_reused(tmp_path):
    cfg = load_config("tiny", ["sft.enabled=true"])
    assert starting_model(cfg, tmp_path).name == "tiny-random"
    (tmp_path / "sft" / "model").mkdir(parents=True)
    (tmp_path / "sft" / "model" / "config.json").write_text("{}")
    assert starting_model(cfg, tmp_path).name == str(tmp_path / "sft" / "model")

    class Loaded:
        model = object()

    events = EventWriter(tmp_path / "events.jsonl")
    res = run_sft_stage(cfg, tmp_path, Loaded(), events, None, "cpu")
    events.close()
    assert res.skipped and res.model is Loaded.model
    ev = read_events(tmp_path / "events.jsonl")
    assert ev[-1]["type"] == "stage" and ev[-1]["status"] == "skipped"


# --------------------------------------------------------------------- the two stages


@pytest.fixture(scope="module")
def staged_run(tmp_path_factory):
    """tiny-random: SFT (2 steps) -> GRPO (2 steps) with dynamic sampling and an eval every step."""
    d = tmp_path_factory.mktemp("staged")
    preset = write_preset(
        d / "tiny-sft.toml",
        f"""
extends = "tiny"
[sft]
enabled = true
max_examples = 16
max_steps = 2
per_device_train_batch_size = 2
gradient_accumulation_steps = 2
max_length = 192
learning_rate = 1e-3
[curriculum]
dynamic_sampling = true
dynamic_sampling_criterion = "total"
dynamic_sampling_max_extra = 2.0
[eval]
every_steps = 1
limit = 3
max_new_tokens = 4
batch_size = 3
[rewards]
"{FIXTURES / "spread_rewards.py"}:parity_spread" = 1.0
correctness = 1.0
[train]
max_steps = 2
max_completion_length = 10
""",
    )
    run_dir = d / "run"
    proc = run_engine(["--preset", str(preset), "--run-dir", str(run_dir)], timeout=400)
    return run_dir, proc


def test_sft_then_grpo_in_one_run(staged_run):
    run_dir, proc = staged_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = read_events(RunDir(run_dir).events)
    stages = [(e["stage"], e["status"]) for e in events if e["type"] == "stage"]
    assert stages == [("sft", "started"), ("sft", "finished"), ("grpo", "started")]
    sft_steps = [e for e in events if e["type"] == "sft_step"]
    assert [e["step"] for e in sft_steps] == [1, 2]
    for e in sft_steps:
        assert e["max_steps"] == 2 and e["loss"] > 0 and 0 <= e["mean_token_accuracy"] <= 1
        assert e["learning_rate"] is not None and e["elapsed_s"] > 0
    start = next(e for e in events if e["type"] == "stage" and e["status"] == "started")
    assert start["examples"] == 16 and start["effective_batch"] == 4
    # SFT events come before the first GRPO step, and GRPO ran to the end
    first_step = next(i for i, e in enumerate(events) if e["type"] == "step")
    assert max(i for i, e in enumerate(events) if e["type"] == "sft_step") < first_step
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2]
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "finished"
    assert (run_dir / "sft" / "model" / "model.safetensors").exists()
    s = summarize(events)
    assert s.sft_status == "finished" and len(s.sft_losses) == 2


def test_eval_events_during_training(staged_run):
    run_dir, proc = staged_run
    evals = [e for e in read_events(RunDir(run_dir).events) if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [0, 1, 2]
    for e in evals:
        assert e["dataset"] == "synthetic" and e["n"] == 3 and 0 <= e["accuracy"] <= 1
        assert e["ci_low"] <= e["accuracy"] <= e["ci_high"] and e["max_new_tokens"] == 4
        assert Path(e["path"]).exists() and len(Path(e["path"]).read_text().splitlines()) == 3
    # the same held-out items every time
    qs = [[json.loads(x)["question"] for x in Path(e["path"]).read_text().splitlines()] for e in evals]
    assert qs[0] == qs[1] == qs[2]


def test_dynamic_sampling_metrics_in_step_events(staged_run):
    run_dir, proc = staged_run
    steps = [e for e in read_events(RunDir(run_dir).events) if e["type"] == "step"]
    for s in steps:
        m = s["metrics"]
        for k in (
            "frac_reward_zero_std",
            "dynamic_sampling/frac_reward_zero_std_before",
            "dynamic_sampling/frac_uniform_correct_before",
            "dynamic_sampling/frac_uniform_correct",
            "dynamic_sampling/extra_groups",
            "dynamic_sampling/generated_ratio",
            "dynamic_sampling/fallback_groups",
        ):
            assert k in m, k
        # never worse than before filtering; the refill cap (2 x 2 groups) holds
        assert m["frac_reward_zero_std"] <= m["dynamic_sampling/frac_reward_zero_std_before"]
        assert m["dynamic_sampling/extra_groups"] <= 4
    before = sum(s["metrics"]["dynamic_sampling/frac_reward_zero_std_before"] for s in steps)
    after = sum(s["metrics"]["frac_reward_zero_std"] for s in steps)
    assert before > 0 and after < before, (before, after)
    # the rollouts hold the groups that trained: 2 per step, every one informative unless the cap was hit
    lines = [json.loads(x) for x in RunDir(run_dir).rollouts.read_text().splitlines()]
    assert sorted((r["step"], r["group"]) for r in lines) == [(1, 0), (1, 1), (2, 0), (2, 1)]
