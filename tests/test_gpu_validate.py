"""bench/gpu_validate.py in its cheapest mode (--dry-run on the CPU): the whole script path, one preset, one step."""

from __future__ import annotations

import json

import pytest

from conftest import REPO, run_cli


def _gsm8k(tmp_path):
    from grpo_tui.engine.data.synthetic import generate
    d = tmp_path / "data" / "gsm8k"
    d.mkdir(parents=True)
    rows = [{"question": r["question"], "answer": f"So {r['answer']}.\n#### {r['answer']}"} for r in generate(32, 1, 3)]
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d.parent


def test_help_works():
    proc = run_cli([str(REPO / "bench" / "gpu_validate.py"), "--help"], timeout=60)
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "--budget-min" in proc.stdout


def test_dry_run_one_preset_writes_the_table(tmp_path):
    out = tmp_path / "table.md"
    proc = run_cli([str(REPO / "bench" / "gpu_validate.py"), "--dry-run", "--data-dir", str(_gsm8k(tmp_path)),
                    "--presets", "gpu24-qwen15b-ckpt,gpu80x2-qwen7b-full-zero3", "--work-dir", str(tmp_path / "w"),
                    "--ab", "train.max_completion_length=8", "--ab-env", "GRPO_TUI_GROUP_ACCESS=1",
                    "--out", str(out)], timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {line.split("|")[1].strip(" `"): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.read_text().splitlines() if line.startswith("| `")}
    g16 = rows["gpu24-qwen15b-ckpt"]
    assert g16[0] == "transformers" and g16[1] == "ok"
    assert float(g16[2]) > 0 and float(g16[5]) > 0  # step time, the benchmark's transformers tokens/s
    assert "generate" in g16[3] and "%" in g16[3] and float(g16[4]) > 0  # the engine's phases and generation tok/s
    # --ab/--ab-env: the same preset again with the override and the engine's environment variable, on the same
    # model, and the ratio of the two step times
    ab = rows["gpu24-qwen15b-ckpt + train.max_completion_length=8 GRPO_TUI_GROUP_ACCESS=1"]
    assert ab[1] == "ok" and float(ab[2]) > 0 and ab[5] == "-"  # no second generation benchmark
    ratio = float(out.read_text().split("/ without = ")[1].split()[0])
    assert ratio == pytest.approx(float(ab[2]) / float(g16[2]), abs=0.01)
    # the variable reached the B engine only: it made its run directory group-readable
    modes = {json.loads((d / "config.json").read_text())["train"]["max_completion_length"]:
             (d / "events.jsonl").stat().st_mode & 0o777 for d in (tmp_path / "w" / "runs").glob("gpu24-qwen15b-ckpt-*") if d.is_dir()}
    assert modes[8] == 0o640 and len(modes) == 2 and all(m == 0o600 for k, m in modes.items() if k != 8), modes
    # each engine's output is kept beside its run directory, failed or not
    logs = sorted((tmp_path / "w" / "runs").glob("gpu24-qwen15b-ckpt-*.log"))
    assert len(logs) == 2 and all("step" in x.read_text() for x in logs)
    assert rows["gpu80x2-qwen7b-full-zero3"][1] == "skipped" and "needs 2 GPUs" in rows["gpu80x2-qwen7b-full-zero3"][-1]


def test_spent_budget_runs_nothing_and_says_so(tmp_path):
    out = tmp_path / "table.md"
    proc = run_cli([str(REPO / "bench" / "gpu_validate.py"), "--dry-run", "--data-dir", str(_gsm8k(tmp_path)),
                    "--presets", "gpu24-qwen05b-g16", "--budget-min", "0", "--work-dir", str(tmp_path / "w"),
                    "--out", str(out)], timeout=120)
    assert proc.returncode == 0
    assert "| `gpu24-qwen05b-g16` | - | not run |" in out.read_text() and "budget of 0 min spent" in out.read_text()


def test_ab_env_needs_name_equals_value(tmp_path):
    proc = run_cli([str(REPO / "bench" / "gpu_validate.py"), "--dry-run", "--data-dir", str(tmp_path),
                    "--ab-env", "PYTORCH_CUDA_ALLOC_CONF"], timeout=120)
    assert proc.returncode == 2 and "--ab-env 'PYTORCH_CUDA_ALLOC_CONF': expected NAME=VALUE" in proc.stderr


def test_no_data_is_a_clear_error(tmp_path):
    proc = run_cli([str(REPO / "bench" / "gpu_validate.py"), "--dry-run", "--data-dir", str(tmp_path)], timeout=120)
    assert proc.returncode == 2 and "gsm8k/train.jsonl" in proc.stderr


def test_set_overrides_are_checked_first_and_refused_per_preset(tmp_path):
    data = str(_gsm8k(tmp_path))
    proc = run_cli([str(REPO / "bench" / "gpu_validate.py"), "--dry-run", "--data-dir", data,
                    "--set", "train.share_prompt_prefx=true"], timeout=120)
    assert proc.returncode == 2 and "share_prompt_prefx" in proc.stderr and "share_prompt_prefix" in proc.stderr
    out = tmp_path / "table.md"
    # gradient checkpointing turns the KV cache off: this preset refuses the override, and the table says why
    proc = run_cli([str(REPO / "bench" / "gpu_validate.py"), "--dry-run", "--data-dir", data, "--presets",
                    "gpu24-qwen15b-ckpt", "--set", "train.share_prompt_prefix=true", "--work-dir", str(tmp_path / "w"),
                    "--out", str(out)], timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "with train.share_prompt_prefix=true" in text
    assert "| `gpu24-qwen15b-ckpt` | - | not run |" in text and "gradient checkpointing" in text
