"""Curriculum filtering and dynamic sampling: the band, the pass-rate cache, the pre-pass, group
judgments and the batch merge. The end-to-end dynamic-sampling run is in test_sft.py (one run, both stages)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from grpo_tui.engine.config import PresetError, load_config
from grpo_tui.engine.train.curriculum import (
    cache_path,
    completion_correct,
    histogram,
    in_band,
    prepass_filter,
    read_cache,
    score_pass_rates,
)
from grpo_tui.engine.train.dynamic_sampling import group_totals, merge_batches, pad_cat, uniform_groups, zero_std_groups
from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.event_writer import EventWriter

# ------------------------------------------------------------------------------ band


def test_band_edges():
    assert not in_band(0.0, 0.0, 1.0, True) and not in_band(1.0, 0.0, 1.0, True)
    assert in_band(0.125, 0.0, 1.0, True) and in_band(0.875, 0.0, 1.0, True)
    assert in_band(0.0, 0.0, 0.5, False) and in_band(0.5, 0.0, 0.5, False) and not in_band(0.625, 0.0, 0.5, False)
    assert in_band(0.25, 0.25, 0.75, False) and not in_band(0.25, 0.25, 0.75, True)


def test_histogram_and_config_checks():
    assert histogram([0, 0, 0.5, 1.0], 4) == {"0/4": 2, "1/4": 0, "2/4": 1, "3/4": 0, "4/4": 1}
    with pytest.raises(PresetError, match="min_pass_rate"):
        load_config("tiny", ["curriculum.min_pass_rate=0.8", "curriculum.max_pass_rate=0.2"])
    with pytest.raises(PresetError, match="empty"):
        load_config("tiny", ["curriculum.prepass=true", "curriculum.min_pass_rate=0.5", "curriculum.max_pass_rate=0.5"])
    with pytest.raises(PresetError, match="prepass_samples"):
        load_config("tiny", ["curriculum.prepass=true", "curriculum.prepass_samples=1"])


def test_completion_correct_is_raw_correctness():
    assert completion_correct("<reasoning>2+2</reasoning><answer>4</answer>", "4", "reasoning")
    assert not completion_correct("the answer is 4", "4", "reasoning")  # right number, no answer tag
    assert completion_correct("<think>2+2</think> \\boxed{4}", "4", "think")


def test_cache_survives_a_torn_last_line(tmp_path):
    p = tmp_path / "pass_rates.jsonl"
    p.write_text(
        json.dumps({"question": "a", "pass_rate": 0.5, "samples": 4})
        + "\n"
        + json.dumps({"question": "a", "pass_rate": 0.25, "samples": 4})
        + "\n"
        + '{"question": "b", "pa'
    )
    cache = read_cache(p)
    assert list(cache) == ["a"] and cache["a"]["pass_rate"] == 0.25
    assert read_cache(tmp_path / "missing.jsonl") == {}


# ---------------------------------------------------------------------------- pre-pass


def _rows(n: int) -> list[dict[str, str]]:
    return [{"question": f"q{i}", "answer": str(i)} for i in range(n)]


def test_prepass_keeps_the_band_from_cached_rates(tmp_path):
    """With every problem already scored (another run's cache), nothing is generated: the filter, event and copy."""
    other = tmp_path / "other.jsonl"
    rates = [0, 0.25, 0.5, 1.0, 0.75, 0]
    other.write_text(
        "".join(
            json.dumps({"question": f"q{i}", "answer": str(i), "samples": 4, "correct": int(r * 4), "pass_rate": r})
            + "\n"
            for i, r in enumerate(rates)
        )
    )
    cfg = load_config(
        "tiny", ["curriculum.prepass=true", "curriculum.prepass_samples=4", f"curriculum.pass_rates_file='{other}'"]
    )
    run = tmp_path / "run"
    run.mkdir()
    events = EventWriter(run / "events.jsonl")
    loaded = SimpleNamespace(model=None, tokenizer=None)  # never used: everything is cached
    kept = prepass_filter(cfg, run, loaded, _rows(6), events, "cpu")
    events.close()
    assert [r["question"] for r in kept] == ["q1", "q2", "q4"]
    ev = next(e for e in read_events(run / "events.jsonl") if e["type"] == "curriculum")
    assert (ev["problems"], ev["kept"], ev["all_wrong"], ev["all_right"], ev["cached"]) == (6, 3, 2, 1, 6)
    assert ev["band"] == "(0.0, 1.0)" and ev["histogram"]["0/4"] == 2 and ev["reused_from"] == str(other)
    assert len(read_cache(cache_path(run))) == 6  # the run's own copy
    stages = [(e["stage"], e["status"]) for e in read_events(run / "events.jsonl") if e["type"] == "stage"]
    assert stages == [("curriculum", "started"), ("curriculum", "finished")]


def test_prepass_scores_with_the_model_and_fails_clearly_on_an_empty_band(tmp_path):
    from grpo_tui.engine.models import load_model

    cfg = load_config(
        "tiny",
        [
            "curriculum.prepass=true",
            "curriculum.prepass_samples=2",
            "curriculum.prepass_max_problems=3",
            "train.max_completion_length=4",
        ],
    )
    loaded = load_model(cfg.model, "cpu", log=lambda m: None)
    events = EventWriter(tmp_path / "events.jsonl")
    with pytest.raises(PresetError, match="no problem has a pass rate"):
        prepass_filter(cfg, tmp_path, loaded, _rows(5), events, "cpu")  # a random model: all wrong
    events.close()
    cache = read_cache(cache_path(tmp_path))
    assert sorted(cache) == ["q0", "q1", "q2"] and all(
        r["samples"] == 2 and r["pass_rate"] == 0 for r in cache.values()
    )
    # scoring again finds everything cached
    again = score_pass_rates(loaded.model, loaded.tokenizer, _rows(3), cfg, "cpu", cache_path(tmp_path), cache)
    assert again == cache


# ---------------------------------------------------------------------- dynamic sampling


def test_group_judgments():
    assert uniform_groups([True, True, False, True, False, False], 2) == [True, False, True]
    rewards = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5], [math.nan, math.nan], [2.0, 0.0]])
    totals = group_totals(rewards, torch.tensor([1.0, 2.0]))
    assert math.isnan(totals[4]) and totals.tolist()[:4] == [1.0, 1.0, 2.0, 1.0]
    assert zero_std_groups(totals, 2) == [True, False, True]  # a lone scorable row has no spread


def test_pad_cat_left_and_right():
    a, b = torch.tensor([[1, 2, 3]]), torch.tensor([[4]])
    assert pad_cat([a, b], 0, left=True).tolist() == [[1, 2, 3], [0, 0, 4]]
    assert pad_cat([a, b], 9, left=False, multiple=4).tolist() == [[1, 2, 3, 9], [4, 9, 9, 9]]


def test_merge_batches_keeps_rows_aligned():
    def batch(prompt_w: int, comp_w: int, base: float) -> dict:
        n = 4
        return {
            "prompt_ids": torch.arange(n * prompt_w).view(n, prompt_w) + 100,
            "prompt_mask": torch.ones(n, prompt_w, dtype=torch.long),
            "completion_ids": torch.arange(n * comp_w).view(n, comp_w) + 500,
            "completion_mask": torch.ones(n, comp_w, dtype=torch.long),
            "old_per_token_logps": torch.full((n, comp_w), base),
            "advantages": torch.arange(n, dtype=torch.float32) + base,
            "num_items_in_batch": torch.tensor(n * comp_w),
        }

    a, b = batch(3, 2, 0.0), batch(2, 5, 10.0)
    m = merge_batches([(a, [2, 3]), (b, [0, 1])], pad_id=7)
    assert m["prompt_ids"].shape == (4, 3) and m["completion_ids"].shape == (4, 5)
    assert m["prompt_ids"][2].tolist() == [7, 100, 101] and m["prompt_mask"][2].tolist() == [0, 1, 1]
    assert m["completion_ids"][0].tolist() == [504, 505, 7, 7, 7] and m["completion_mask"][0].tolist() == [
        1,
        1,
        0,
        0,
        0,
    ]
    assert m["old_per_token_logps"][0].tolist() == [0.0, 0.0, 0.0, 0.0, 0.0]
    assert m["advantages"].tolist() == [2.0, 3.0, 10.0, 11.0]
    assert "num_items_in_batch" not in m  # recomputed by the trainer
    with pytest.raises(NotImplementedError, match="pixel_values"):
        merge_batches([({**a, "pixel_values": torch.zeros(4, 1)}, [0])], pad_id=0)


def test_dynamic_sampling_refuses_what_it_cannot_merge():
    from grpo_tui.engine.train.dynamic_sampling import DynamicSamplingGRPOTrainer

    fake = SimpleNamespace(accelerator=SimpleNamespace(num_processes=2))
    with pytest.raises(RuntimeError, match="single training process"):
        DynamicSamplingGRPOTrainer.configure_dynamic_sampling(fake)
