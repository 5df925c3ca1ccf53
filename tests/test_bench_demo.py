"""bench/demo_learning.py on recorded runs: the cheap mode (--runs) the bench also uses after running the demo."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("demo_learning", ROOT / "bench" / "demo_learning.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["demo_learning"] = mod
    spec.loader.exec_module(mod)
    return mod


def _write_run(path: Path, rewards: list[float]) -> Path:
    path.mkdir()
    t = 1000.0
    events = [
        {"v": 1, "t": t, "type": "run_start", "preset": "cpu-demo", "max_steps": len(rewards)},
        {"v": 1, "t": t + 5, "type": "eval", "step": 0, "correct": 35, "n": 100, "accuracy": 0.35, "eval_s": 4.0},
    ]
    for i, r in enumerate(rewards, start=1):
        events.append(
            {
                "v": 1,
                "t": t + 10 + 6 * i,
                "type": "step",
                "step": i,
                "metrics": {"reward": r},
                "step_time_s": 6.0,
                "generation_tokens_per_s": 80.0,
                "phase_s": {"generation": 4.0, "forward_backward": 1.5, "optimizer": 0.3, "other": 0.2},
            }
        )
    events += [
        {
            "v": 1,
            "t": t + 20 + 6 * len(rewards),
            "type": "eval",
            "step": len(rewards),
            "correct": 60,
            "n": 100,
            "eval_s": 8.0,
        },
        {"v": 1, "t": t + 30 + 6 * len(rewards), "type": "run_end", "status": "finished"},
    ]
    (path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


def test_reads_a_learning_run_and_a_flat_one(tmp_path, capsys):
    bench = _bench()
    rising = [0.5 + 0.05 * i + (0.1 if i % 2 else -0.1) for i in range(30)]
    flat = [0.5 + (0.1 if i % 2 else -0.1) for i in range(30)]
    a, b = _write_run(tmp_path / "rising", rising), _write_run(tmp_path / "flat", flat)
    r = bench.analyze(a)
    assert r.steps == 30 and r.signal_step is not None and r.signal_step < 30 and r.z_end > 2
    # minutes leave out the held-out evals (4 s before step 1, 8 s at the end): they are the bench's, not the demo's
    assert r.signal_min == pytest.approx((10 + 6 * r.signal_step - 4) / 60)
    assert r.wall_min == pytest.approx((30 + 6 * 30 - 4 - 8) / 60) and r.first_step_s == pytest.approx(16 - 4)
    assert r.step_s == pytest.approx(6.0) and r.phase_share["generation"] == pytest.approx(4 / 6)
    assert r.acc_before == (35, 100) and r.acc_after == (60, 100)
    assert bench.analyze(b).signal_step is None
    assert bench.main(["--runs", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "no signal" in out and "generate share" in out and "67%" in out
    assert "35% [26, 45] of 100" in out and "60% [50, 69] of 100" in out  # Wilson 95% intervals


def test_first_steps_reads_a_run_as_if_it_had_ended_there(tmp_path, capsys):
    bench = _bench()
    run = _write_run(tmp_path / "rising", [0.5 + 0.05 * i for i in range(30)])
    whole, first = bench.analyze(run), bench.analyze(run, first_steps=20)
    assert first.name == "rising @20" and first.steps == 20
    assert first.wall_min == pytest.approx((10 + 6 * 20 - 4) / 60)  # to step 20; the eval at step 30 is later
    assert first.acc_before == (35, 100) and first.acc_after is None  # no eval at step 20: no "after"
    assert first.reward_last[0] == pytest.approx(sum(0.5 + 0.05 * i for i in range(16, 20)) / 4)
    assert whole.steps == 30 and whole.acc_after == (60, 100)
    assert bench.main(["--runs", str(run), "--first-steps", "20"]) == 0
    assert "rising @20" in capsys.readouterr().out


def test_rejects_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert _bench().main(["--runs", str(tmp_path)]) == 2
    assert "no events.jsonl" in capsys.readouterr().err


def test_help_works(capsys):
    with pytest.raises(SystemExit) as e:
        _bench().main(["--help"])
    assert e.value.code == 0 and "--baseline" in capsys.readouterr().out


def test_reads_a_real_engine_run(tiny_run, capsys):
    run_dir = tiny_run.dir
    assert _bench().main(["--runs", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "seconds per step" in out and "generate share" in out and "fwd+bwd share" in out


def test_held_out_items_are_counted_by_operation(tmp_path, capsys):
    """The eval item files say which kinds of problem a run learned: here it learned addition and unlearned
    subtraction (a policy that adds whatever the question)."""
    bench = _bench()
    run = _write_run(tmp_path / "run", [0.5 + 0.05 * i for i in range(30)])
    add = "Omar has 4 shells. Then they get 4 more shells. How many shells does Omar have now?"
    sub = "Omar has 4 shells. They lose 3 shells. How many shells does Omar have now?"
    (run / "eval").mkdir()
    for step, right in ((0, {"a1", "s1", "s2"}), (30, {"a1", "a2", "a3"})):
        items = [
            {"id": i, "question": add if i[0] == "a" else sub, "correct": i in right}
            for i in ("a1", "a2", "a3", "s1", "s2", "q1")
        ]
        items[-1]["question"] = "What is 2 + 2?"  # not a synthetic problem
        (run / "eval" / f"step-{step}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in items))
    assert bench.analyze(run).by_operation == {"add": (1, 3, 3), "sub": (2, 0, 2), "other": (0, 0, 1)}
    assert bench.main(["--runs", str(run)]) == 0
    assert "add 1->3/3, sub 2->0/2, other 0->0/1" in capsys.readouterr().out


def test_a_relative_out_is_where_the_engine_writes_and_the_bench_reads(tmp_path, monkeypatch, capsys):
    """The engine runs with the repository root as its directory; a relative --out must not part the two."""
    bench = _bench()
    monkeypatch.chdir(tmp_path)
    given = []

    def engine(cmd, cwd, **kw):
        run_dir = Path(cmd[cmd.index("--run-dir") + 1])
        given.append((run_dir, cwd))
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        _write_run(run_dir, [0.5 + 0.05 * i + (0.1 if i % 2 else -0.1) for i in range(12)])
        return types.SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(bench.subprocess, "run", engine)
    assert bench.main(["--out", "rel", "--seeds", "1", "--max-steps", "12"]) == 0
    ((run_dir, cwd),) = given
    assert cwd == ROOT and run_dir == tmp_path / "rel" / "new-s1"
    steps_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("steps "))
    assert steps_row.split()[1] == "12"  # the table read the run the engine wrote, not an empty directory
