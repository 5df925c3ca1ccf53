"""bench/gpu_validate.py in its cheapest mode (--dry-run on the CPU): the whole script path, one preset, one step."""

from __future__ import annotations

import json

import pytest
from support.paths import REPO
from support.processes import run_cli


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
    proc = run_cli(
        [
            str(REPO / "bench" / "gpu_validate.py"),
            "--dry-run",
            "--data-dir",
            str(_gsm8k(tmp_path)),
            "--presets",
            "gpu24-qwen15b-ckpt,gpu80x2-qwen7b-full-zero3",
            "--work-dir",
            str(tmp_path / "w"),
            "--ab",
            "train.max_completion_length=8",
            "--ab-env",
            "GRPO_TUI_GROUP_ACCESS=1",
            "--out",
            str(out),
        ],
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(" `"): [c.strip() for c in line.split("|")[2:-1]]
        for line in out.read_text().splitlines()
        if line.startswith("| `")
    }
    g16 = rows["gpu24-qwen15b-ckpt"]
    assert g16[0] == "transformers" and g16[1] == "ok"
    assert float(g16[2]) > 0 and float(g16[6]) > 0  # step time, the benchmark's transformers tokens/s
    assert "generate" in g16[3] and "%" in g16[3] and float(g16[4]) > 0  # the engine's phases and generation tok/s
    assert 0 < float(g16[5]) < 100  # generation speed as a percentage of the memory-bandwidth bound
    # --ab/--ab-env: the same preset again with the override and the engine's environment variable, on the same
    # model, and the ratio of the two step times
    ab = rows["gpu24-qwen15b-ckpt + train.max_completion_length=8 GRPO_TUI_GROUP_ACCESS=1"]
    assert ab[1] == "ok" and float(ab[2]) > 0 and ab[6] == "-"  # no second generation benchmark
    ratio = float(out.read_text().split("/ without = ")[1].split()[0])
    assert ratio == pytest.approx(float(ab[2]) / float(g16[2]), abs=0.01)
    # the variable reached the B engine only: it made its run directory group-readable
    runs = [d for d in (tmp_path / "w" / "runs").glob("gpu24-qwen15b-ckpt-*") if d.is_dir()]
    modes = {
        json.loads((d / "config.json").read_text())["train"]["max_completion_length"]: (d / "events.jsonl")
        .stat()
        .st_mode
        & 0o777
        for d in runs
    }
    assert modes[8] == 0o640 and len(modes) == 2 and all(m == 0o600 for k, m in modes.items() if k != 8), modes
    # each engine's output is kept beside its run directory, failed or not
    logs = sorted((tmp_path / "w" / "runs").glob("gpu24-qwen15b-ckpt-*.log"))
    assert len(logs) == 2 and all("step" in x.read_text() for x in logs)
    assert rows["gpu80x2-qwen7b-full-zero3"][1] == "skipped" and "needs 2 GPUs" in rows["gpu80x2-qwen7b-full-zero3"][-1]


def test_spent_budget_runs_nothing_and_says_so(tmp_path):
    out = tmp_path / "table.md"
    proc = run_cli(
        [
            str(REPO / "bench" / "gpu_validate.py"),
            "--dry-run",
            "--data-dir",
            str(_gsm8k(tmp_path)),
            "--presets",
            "gpu24-qwen05b-g16",
            "--budget-min",
            "0",
            "--work-dir",
            str(tmp_path / "w"),
            "--out",
            str(out),
        ],
        timeout=120,
    )
    assert proc.returncode == 0
    assert "| `gpu24-qwen05b-g16` | - | not run |" in out.read_text() and "budget of 0 min spent" in out.read_text()


def test_ab_env_needs_name_equals_value(tmp_path):
    proc = run_cli(
        [
            str(REPO / "bench" / "gpu_validate.py"),
            "--dry-run",
            "--data-dir",
            str(tmp_path),
            "--ab-env",
            "PYTORCH_CUDA_ALLOC_CONF",
        ],
        timeout=120,
    )
    assert proc.returncode == 2 and "--ab-env 'PYTORCH_CUDA_ALLOC_CONF': expected NAME=VALUE" in proc.stderr


def test_no_data_is_a_clear_error(tmp_path):
    proc = run_cli([str(REPO / "bench" / "gpu_validate.py"), "--dry-run", "--data-dir", str(tmp_path)], timeout=120)
    assert proc.returncode == 2 and "gsm8k/train.jsonl" in proc.stderr


def test_set_overrides_are_checked_first_and_refused_per_preset(tmp_path):
    data = str(_gsm8k(tmp_path))
    proc = run_cli(
        [
            str(REPO / "bench" / "gpu_validate.py"),
            "--dry-run",
            "--data-dir",
            data,
            "--set",
            "train.share_prompt_prefx=true",
        ],
        timeout=120,
    )
    assert proc.returncode == 2 and "share_prompt_prefx" in proc.stderr and "share_prompt_prefix" in proc.stderr
    out = tmp_path / "table.md"
    # gradient checkpointing turns the KV cache off: this preset refuses the override, and the table says why
    proc = run_cli(
        [
            str(REPO / "bench" / "gpu_validate.py"),
            "--dry-run",
            "--data-dir",
            data,
            "--presets",
            "gpu24-qwen15b-ckpt",
            "--set",
            "train.share_prompt_prefix=true",
            "--work-dir",
            str(tmp_path / "w"),
            "--out",
            str(out),
        ],
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = out.read_text()
    assert "with train.share_prompt_prefix=true" in text
    assert "| `gpu24-qwen15b-ckpt` | - | not run |" in text and "gradient checkpointing" in text


def _paths_table(text: str) -> dict[str, list[str]]:
    """The side-by-side table's rows by path: preset, path, status, step s, engine tok/s, % of bound, tok/s alone,
    % of bound alone, peak GB alone, log-prob max and mean abs diff, notes."""
    part = text.split("Generation paths side by side")[1]
    rows = ([c.strip() for c in line.split("|")[1:-1]] for line in part.splitlines() if line.startswith("| `"))
    return {cells[1]: cells for cells in rows}


def _run_paths(tmp_path, paths: str, timeout: float):
    out = tmp_path / "table.md"
    proc = run_cli(
        [
            str(REPO / "bench" / "gpu_validate.py"),
            "--dry-run",
            "--data-dir",
            str(_gsm8k(tmp_path)),
            "--presets",
            "gpu24-qwen15b-ckpt",
            "--paths",
            paths,
            "--multi-step",
            "2",
            "--no-gen-bench",
            "--work-dir",
            str(tmp_path / "w"),
            "--out",
            str(out),
        ],
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return _paths_table(out.read_text())


def test_dry_run_compares_generation_paths_side_by_side(tmp_path):
    paths = _run_paths(tmp_path, "today,static-compile", timeout=900)
    today = paths["today"]
    assert today[2] == "ok" and float(today[3]) > 0 and float(today[4]) > 0 and 0 < float(today[5]) < 100
    assert float(today[6]) > 0 and 0 < float(today[7]) < 100 and float(today[8]) > 0
    assert float(today[9]) < 1e-3  # float32 on the CPU: generate's log-probs are the teacher-forced ones
    compiled = paths["static-compile"]  # TRL's generation config keeps compilation off: measured alone only
    assert compiled[2] == "alone only" and compiled[3] == "-" and float(compiled[6]) > 0
    assert "disable_compile" in compiled[-1]


def test_multi_step_path_generates_for_k_optimizer_steps_over_whole_cycles(monkeypatch):
    import importlib.util
    import sys

    from grpo_tui.engine.config import load_config

    spec = importlib.util.spec_from_file_location("gpu_validate", REPO / "bench" / "gpu_validate.py")
    gv = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_validate", gv)  # its dataclasses look their module up there
    spec.loader.exec_module(gv)
    cfg = load_config("gpu24-qwen15b-ckpt")
    spg = cfg.train.steps_per_generation or cfg.train.gradient_accumulation_steps
    assert gv.path_overrides("multi-step", cfg, 4) == [f"train.steps_per_generation={4 * spg}"]
    assert gv.path_steps("multi-step", 3, 4, dry=False) == 9  # the first step, then two cycles of 4
    assert gv.path_steps("multi-step", 3, 2, dry=True) == 3 and gv.path_steps("today", 3, 4, dry=False) == 3
    assert gv.path_overrides("static-compile", cfg, 4) is None
    for path in ("today", "paged", "static", "multi-step"):
        load_config("gpu24-qwen15b-ckpt", gv.path_overrides(path, cfg, 4))  # every override is a valid setting


@pytest.mark.slow
def test_dry_run_runs_every_generation_path(tmp_path):
    paths = _run_paths(tmp_path, ",".join(("today", "paged", "static", "static-compile", "multi-step")), 3600)
    assert all(paths[p][2] == "ok" and float(paths[p][6]) > 0 for p in ("today", "paged", "static", "multi-step"))
    assert paths["static-compile"][2] == "alone only"


def test_unknown_generation_path_is_refused(tmp_path):
    proc = run_cli(
        [str(REPO / "bench" / "gpu_validate.py"), "--dry-run", "--data-dir", str(tmp_path), "--paths", "today,warp"],
        timeout=120,
    )
    assert proc.returncode == 2 and "--paths: unknown warp" in proc.stderr
