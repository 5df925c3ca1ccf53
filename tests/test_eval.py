"""Evaluation: statistics, scoring, datasets, model resolution, the CLI on tiny-random."""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from math import comb
from pathlib import Path

import pytest
from support.paths import REPO, SHARED_DATA

from grpo_tui.engine.eval.data import heldout_synthetic, items_from_records, load_eval_data
from grpo_tui.engine.eval.errors import EvalError
from grpo_tui.engine.eval.report import compare, compare_markdown
from grpo_tui.engine.eval.resolve import resolve_model
from grpo_tui.engine.eval.scoring import Completion, aggregate, flexible_answer, majority, score_items
from grpo_tui.engine.eval.stats import mean_ci, pass_at_k, wilson
from grpo_tui.tui.console.eval import main

# ------------------------------------------------------------------------ statistics


def test_wilson_matches_known_values():
    lo, hi = wilson(0, 50)
    assert lo == 0.0 and abs(hi - 0.0713) < 1e-3
    lo, hi = wilson(25, 50)
    assert abs(lo - 0.366) < 1e-3 and abs(hi - 0.634) < 1e-3
    lo, hi = wilson(50, 50)
    assert hi == 1.0 and abs(lo - 0.9287) < 1e-3
    assert wilson(0, 0) == (0.0, 1.0)


def test_pass_at_k_is_the_unbiased_estimator():
    # 1 - C(n-c, k) / C(n, k), and by brute force: the chance a random k-subset holds a correct sample
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                exact = 1 - comb(n - c, k) / comb(n, k)
                assert abs(pass_at_k(n, c, k) - exact) < 1e-12
                samples = [1] * c + [0] * (n - c)
                subsets = list(itertools.combinations(range(n), k))
                brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
                assert abs(pass_at_k(n, c, k) - brute) < 1e-12
    assert pass_at_k(8, 2, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_mean_ci_brackets_the_mean():
    xs = [random.Random(0).random() for _ in range(100)]
    lo, hi = mean_ci(xs)
    m = sum(xs) / len(xs)
    assert lo < m < hi and hi - lo < 0.2


# --------------------------------------------------------------------------- scoring


def test_flexible_answer_last_number_or_boxed():
    assert flexible_answer("so 3 + 4 = 7 apples", False) == "7"
    assert flexible_answer("it costs $1,250.", False) == "1250"
    assert flexible_answer("\\boxed{\\frac{1}{2}} after 3 steps", True) == "\\frac{1}{2}"
    assert flexible_answer("\\boxed{\\frac{1}{2}} after 3 steps", False) == "3"
    assert flexible_answer("no numbers", False) is None


def test_majority_vote_groups_equal_numbers():
    assert majority(["18", "18.00", "$18", "20", None]) == "18"
    assert majority([None, None]) is None
    assert majority(["5", "6"]) == "5"  # a tie goes to the first given


def test_strict_and_flexible_scores_differ_on_format():
    from grpo_tui.engine.eval.data import EvalItem

    items = [EvalItem("a", "q", "7"), EvalItem("b", "q", "12")]
    greedy = [
        Completion("<reasoning>3+4=7</reasoning>\n<answer>\n7\n</answer>", 20, False),
        Completion("The total is 12.", 6, False),
    ]  # right number, wrong format
    rows, numbers = score_items(items, greedy, None, "reasoning", False)
    assert [r["correct"] for r in rows] == [True, False]
    assert [r["correct_flex"] for r in rows] == [True, True]
    g = numbers["greedy"]
    assert g["strict"]["correct"] == 1 and g["flexible"]["correct"] == 2 and g["format_rate"] == 0.5
    lo, hi = g["strict"]["ci95"]
    assert lo < 0.5 < hi


def test_sampled_metrics_pass_at_k_and_majority():
    from grpo_tui.engine.eval.data import EvalItem

    items = [EvalItem("a", "q", "7"), EvalItem("b", "q", "3")]
    ans = lambda x: Completion(f"<answer>{x}</answer>", 5, False)  # noqa: E731
    samples = [[ans(7), ans(7), ans(1), ans(2)], [ans(1), ans(1), ans(3), ans(4)]]
    rows, numbers = score_items(items, None, samples, "reasoning", False)
    s = numbers["sampled"]["strict"]
    assert s["pass@1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert s["pass@4"] == pytest.approx(1.0)
    assert s["maj@4"]["correct"] == 1  # item a: 7 wins; item b: 1 wins
    assert rows[0]["majority"] == "7" and rows[1]["majority"] == "1"
    assert numbers["sampled"]["frac_all_same"] == 0.0


def test_compare_table_and_paired_counts():
    def mk(flags):
        return [
            {"id": str(i), "correct": f, "correct_flex": f, "extracted": "1", "tokens": 3, "truncated": False}
            for i, f in enumerate(flags)
        ]

    a, b = mk([True, False, False, True]), mk([True, True, True, False])
    sa = {"model": "base", "dataset": "x", **aggregate(a, True, 0)}
    sb = {"model": "ckpt", "dataset": "x", **aggregate(b, True, 0)}
    cmp = compare([sa, sb], [a, b])
    row = cmp["table"][0]
    assert row["metric"] == "greedy pass@1 strict" and row["values"] == [0.5, 0.75] and row["delta"][1] == 0.25
    strict = next(p for p in cmp["paired"] if p["mode"] == "strict")
    assert (strict["fixed"], strict["broken"], strict["items"]) == (2, 1, 4)
    md = compare_markdown(cmp)
    assert "| greedy pass@1 strict (%) | 50.0 | 75.0 | +25.0 |" in md


# -------------------------------------------------------------------------- datasets


def test_items_from_gsm8k_and_math_records():
    items, skipped, math_style = items_from_records(
        [{"question": "q1", "answer": "work\n#### 1,234"}, {"question": "", "answer": "#### 1"}, {"question": "q3"}],
        "g",
    )
    assert [(i.question, i.gold) for i in items] == [("q1", "1234")] and skipped == 2 and not math_style
    items, _, math_style = items_from_records(
        [
            {"problem": "p", "answer": "\\frac{1}{2}", "unique_id": "u1"},
            {"problem": "p2", "solution": "so \\boxed{\\sqrt{2}}."},
        ],
        "m",
    )
    assert [(i.id, i.gold) for i in items] == [("u1", "\\frac{1}{2}"), ("m-1", "\\sqrt{2}")] and math_style


@pytest.mark.skipif(not (SHARED_DATA / "gsm8k" / "test.jsonl").exists(), reason="needs ../shared/data")
def test_shared_files_load_with_limit_and_shuffle():
    d = load_eval_data(str(SHARED_DATA / "gsm8k" / "test.jsonl"), limit=5)
    assert len(d.items) == 5 and not d.math_style and d.items[0].gold == "18"
    m = load_eval_data(str(SHARED_DATA / "math500" / "test.jsonl"), limit=20, shuffle_seed=1)
    assert len(m.items) == 20 and m.math_style
    assert load_eval_data(str(SHARED_DATA / "math500" / "test.jsonl"), limit=20, shuffle_seed=1).items == m.items


def test_heldout_synthetic_is_disjoint_from_training():
    from grpo_tui.engine.data.synthetic import generate

    train = {p["question"] for p in generate(2000, 1, 42)}
    held = heldout_synthetic(300, 1, train_seed=42, train_size=2000)
    assert len(held) == 300 and not train & {i.question for i in held}
    assert [i.question for i in heldout_synthetic(300, 1, 42, 2000)] == [i.question for i in held]  # fixed subset


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(EvalError, match="not 'gsm8k'"):
        load_eval_data(str(tmp_path / "nope.jsonl"))


# ---------------------------------------------------------------------------- models


def _fake_run(tmp_path: Path, lora: bool) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    for step in (2, 5):
        name = "adapter_config.json" if lora else "config.json"
        (run / "checkpoints" / f"checkpoint-{step}" / name).write_text("{}")
        # complete, as the one checkpoint lookup (rundir.checkpoints.find_checkpoints) defines it
        (run / "checkpoints" / f"checkpoint-{step}" / "trainer_state.json").write_text(
            json.dumps({"global_step": step})
        )
    (run / "events.jsonl").write_text("")
    from grpo_tui.engine.config import load_config

    cfg = load_config("tiny", ["prompt.format=think", f"model.lora={str(lora).lower()}"])
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    return run


def test_resolve_run_dir_latest_step_sft_and_base(tmp_path):
    run = _fake_run(tmp_path, lora=False)
    spec = resolve_model(str(run))
    assert spec.step == 5 and spec.path.endswith("checkpoint-5") and spec.adapter is None
    assert spec.prompt.format == "think"  # the run's prompt format
    assert resolve_model(f"{run}@2").path.endswith("checkpoint-2")
    assert resolve_model(str(run / "checkpoints" / "checkpoint-2")).step == 2
    with pytest.raises(EvalError, match=r"steps \[2, 5\]"):
        resolve_model(f"{run}@3")
    with pytest.raises(EvalError, match="no finished SFT stage"):
        resolve_model(f"{run}@sft")
    (run / "sft" / "model").mkdir(parents=True)
    (run / "sft" / "model" / "config.json").write_text("{}")
    assert resolve_model(f"{run}@sft").path == str(run.resolve() / "sft" / "model")
    assert "tiny-random" in resolve_model(f"{run}@base").path


def test_resolve_lora_checkpoint_is_base_plus_adapter(tmp_path):
    run = _fake_run(tmp_path, lora=True)
    spec = resolve_model(str(run))
    assert spec.adapter and spec.adapter.endswith("checkpoint-5") and "tiny-random" in spec.path
    (run / "sft" / "model").mkdir(parents=True)
    (run / "sft" / "model" / "config.json").write_text("{}")
    assert resolve_model(str(run)).path.endswith("sft/model")  # the adapter sits on the SFT weights


# ------------------------------------------------------------------------------- CLI


def test_cli_on_tiny_random_writes_results_summary_and_compare(tmp_path, capsys):
    data = tmp_path / "mini.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"What is {i} + {i}?", "answer": f"#### {2 * i}"}) + "\n" for i in range(4))
    )
    out = tmp_path / "out"
    code = main(
        [
            "--model",
            "tiny-random",
            "--compare",
            "tiny-random",
            "--dataset",
            str(data),
            "--limit",
            "3",
            "--samples",
            "2",
            "--max-new-tokens",
            "6",
            "--preset",
            "tiny",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().out
    rows = [json.loads(x) for x in (out / "tiny-random" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert set(rows[0]) >= {
        "question",
        "gold",
        "completion",
        "extracted",
        "correct",
        "extracted_flex",
        "correct_flex",
        "tokens",
        "truncated",
        "samples",
        "n_correct",
        "majority",
    }
    s = json.loads((out / "tiny-random" / "summary.json").read_text())
    assert s["n"] == 3 and s["greedy"]["strict"]["ci95"][1] > 0 and s["sampled"]["k"] == 2
    assert s["prompt"]["format"] == "reasoning" and s["device"] == "cpu"
    assert (out / "tiny-random-2" / "summary.json").exists()
    cmp = json.loads((out / "compare.json").read_text())
    assert cmp["models"] == ["tiny-random", "tiny-random"] and cmp["table"][0]["delta"][1] == 0.0
    assert "before/after" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["--model", "tiny-random", "--dataset", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["--model", str(tmp_path / "nope"), "--dataset", "synthetic"]) == 2
    assert main(["--model", "tiny-random", "--dataset", "synthetic", "--no-greedy"]) == 2


def test_module_entry_point_help():
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_tui.tui.cli", "eval", "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0 and "--samples" in proc.stdout and "--compare" in proc.stdout


def test_generate_with_stop_strings_ends_every_row_at_a_string():
    """Held-out evals stop where training stops: each row ends at its first stop string with the end-of-turn token
    (the row that stopped last included), so none reads as cut at the cap."""
    from grpo_tui.engine.eval.generation import generate
    from grpo_tui.engine.eval.resolve import load_for_eval, resolve_model

    model, tok = load_for_eval(resolve_model("tiny-random"), "cpu", "float32")
    prompts = [f"Question {i}: what is {i} + {i}?" for i in range(4)]
    free = generate(model, tok, prompts, max_new_tokens=40, batch_size=8, num_samples=2, do_sample=True, seed=3)
    stopped = generate(
        model,
        tok,
        prompts,
        max_new_tokens=40,
        batch_size=8,
        num_samples=2,
        do_sample=True,
        seed=3,
        stop_strings=["e", "a", "o"],
    )
    pairs = [(f, s) for fs, ss in zip(free, stopped) for f, s in zip(fs, ss)]
    assert sum(f.tokens > s.tokens for f, s in pairs) >= len(pairs) // 2, [(f.tokens, s.tokens) for f, s in pairs]
    for f, s in pairs:
        assert s.text == f.text[: len(s.text)]  # the same sample, cut short
        if any(x in s.text for x in "eao"):
            assert not s.truncated, s.text
            first = min(s.text.index(x) for x in "eao" if x in s.text)
            assert len(s.text) - first <= 12, s.text


def test_held_out_prompts_are_rendered_with_the_runs_chat_template_kwargs():
    from grpo_tui.engine.config import PromptConfig, load_config
    from grpo_tui.engine.data.prompts import chat_template_kwargs
    from grpo_tui.engine.eval.generation import render_prompts
    from grpo_tui.engine.small_tokenizer import build_small_tokenizer

    tok = build_small_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        "{% if enable_thinking is defined and not enable_thinking %}/no_think{% endif %}"
    )
    kwargs = chat_template_kwargs(load_config("gpu24-qwen3-06b-nothink"))
    assert kwargs == {"enable_thinking": False}
    assert render_prompts(tok, ["2+2?"], PromptConfig(), kwargs)[0].endswith("/no_think")
    assert not render_prompts(tok, ["2+2?"], PromptConfig())[0].endswith("/no_think")
