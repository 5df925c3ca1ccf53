"""Cost of recording per-token log-probabilities and entropies: step time and store size, side by side.

One real engine run (`python -m grpo_tui.engine train`'s path) alternates, step by
step, between recording the per-token arrays (token ids, each token's piece of
the text, log-probability, entropy) and not recording them, so both halves see
the same model, data and machine load. Prints the median step time of each
half (process CPU time, which counts the recording thread too, and wall time)
and their ratio, target within 2%. On a shared machine a step's time varies
by more than the cost measured, so the added work is also timed directly:
the CPU time of the hand-over inside the loss (training thread) and the
recording thread's extra CPU time per batch (moving the values to the CPU,
decoding each token's piece, the larger JSON line), as a share of the step.

Store size: the run's recorded groups written as rollouts.jsonl and as a zstd
Arrow segment, once as recorded and once with the per-token arrays removed;
the ratio is what recording costs on disk.

    python bench/token_stats.py [--preset tiny] [--steps 40] [--threads 1] [--set train.max_completion_length=128]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from grpo_tui.engine.config import load_config  # noqa: E402
from grpo_tui.engine.train.grpo import RecordingGRPOTrainer  # noqa: E402
from grpo_tui.engine.train.orchestrator import train as engine_train  # noqa: E402
from grpo_tui.rundir.layout import RunDir  # noqa: E402
from grpo_tui.rundir.rollouts import Chunk, ReadReport, read_rollouts, write_segment  # noqa: E402
from grpo_tui.rundir.rollouts.records import TOKEN_ARRAYS  # noqa: E402


class Alternate(TrainerCallback):
    """Turns recording on for even steps and off for odd ones; times each step (wall and process CPU)."""

    def __init__(self, recorder) -> None:
        self.recorder = recorder
        self.times: dict[bool, dict[str, list[float]]] = {m: {"cpu": [], "wall": []} for m in (True, False)}
        self.mode = True
        self.start = (0.0, 0.0)
        self.handover: list[float] = []  # CPU seconds in add_token_stats, per call (training thread)
        self.writes: dict[bool, list[float]] = {True: [], False: []}  # recording thread CPU per batch written
        add, write = recorder.add_token_stats, recorder._write

        def timed_add(*a):
            t0 = time.thread_time()
            add(*a)
            self.handover.append(time.thread_time() - t0)

        def timed_write(batch):
            t0 = time.thread_time()
            write(batch)
            self.writes[batch.token_stats].append(time.thread_time() - t0)

        recorder.add_token_stats, recorder._write = timed_add, timed_write

    def on_step_begin(self, args, state, control, **kw):
        self.mode = state.global_step % 2 == 0
        self.recorder.token_stats = self.mode  # read when the step's batch is recorded, just after this
        self.start = (time.perf_counter(), time.process_time())

    def on_log(self, args, state, control, logs=None, **kw):
        # after the engine's own on_log, which waits for the step's rollouts: their writing is inside the step
        if logs and "train_runtime" not in logs:
            self.recorder.wait()
            t = self.times[self.mode]
            t["wall"].append(time.perf_counter() - self.start[0])
            t["cpu"].append(time.process_time() - self.start[1])


def run(preset: str, steps: int, overrides: list[str], out: Path) -> tuple[Alternate, Path]:
    cfg = load_config(preset, [f"train.max_steps={steps}", "train.save_final=false", *overrides])
    run_dir = RunDir(out)
    run_dir.root.mkdir(parents=True, exist_ok=True)
    run_dir.control.mkdir(mode=0o700, exist_ok=True)
    holder: dict[str, Alternate] = {}
    original = RecordingGRPOTrainer.add_callback

    def add_then_alternate(self, cb):
        original(self, cb)
        if type(cb).__name__ == "EngineCallback":
            holder["cb"] = Alternate(cb.recorder)
            original(self, holder["cb"])

    RecordingGRPOTrainer.add_callback = add_then_alternate
    try:
        code, _ = engine_train(cfg, run_dir, resume=False)
    finally:
        RecordingGRPOTrainer.add_callback = original
    assert code == 0, f"engine run failed, see {run_dir.events}"
    return holder["cb"], run_dir.rollouts


def sizes(rollouts: Path, tmp: Path) -> tuple[dict[str, int], dict[str, int], int]:
    """Bytes of the recorded groups (those with arrays) as JSONL and as one segment: with and without arrays."""
    groups, _ = read_rollouts(rollouts)
    with_arrays = [g for g in groups if any("token_ids" in c for c in g["completions"])]
    without = [
        dict(g, completions=[{k: v for k, v in c.items() if k not in TOKEN_ARRAYS} for c in g["completions"]])
        for g in with_arrays
    ]
    jsonl, seg = {}, {}
    for name, gs in (("with", with_arrays), ("without", without)):
        data = "".join(json.dumps(g, ensure_ascii=False) + "\n" for g in gs).encode()
        jsonl[name] = len(data)
        path = write_segment(tmp / name, 0, len(data), Chunk.from_records(gs, ReadReport()))
        seg[name] = path.stat().st_size
    return jsonl, seg, sum(len(g["completions"]) for g in with_arrays)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU time a measure of work)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        alt, rollouts = run(args.preset, args.steps, args.overrides, Path(tmp) / "run")
        jsonl, seg, completions = sizes(rollouts, Path(tmp))
    print(
        f"preset {args.preset}, {args.steps} steps alternating, torch threads {args.threads}, "
        f"device {'cuda' if torch.cuda.is_available() else 'cpu'}"
    )
    for measure in ("cpu", "wall"):
        on, off = (alt.times[m][measure][1:] for m in (True, False))  # the first of each pays warm-up
        a, b = statistics.median(on), statistics.median(off)
        print(
            f"{measure:4s} median step: recording {a:.4f}s ({len(on)} steps), not recording {b:.4f}s "
            f"({len(off)} steps); ratio {a / b:.3f}"
        )
    cpu_off = statistics.median(alt.times[False]["cpu"][1:])
    per_step = len(alt.handover) / max(len(alt.times[True]["cpu"]), 1)  # hand-overs per recorded step
    hand = statistics.median(alt.handover) * per_step
    extra = statistics.median(alt.writes[True][1:]) - statistics.median(alt.writes[False][1:])
    print(
        f"direct: hand-over in the loss {hand * 1e3:.2f} ms/step, recording thread +{extra * 1e3:.2f} ms/step "
        f"(writes {statistics.median(alt.writes[True][1:]) * 1e3:.2f} vs "
        f"{statistics.median(alt.writes[False][1:]) * 1e3:.2f} ms); "
        f"{(hand + extra) / cpu_off * 100:.2f}% of the step's CPU time"
    )
    print(
        f"store, {completions} completions: rollouts.jsonl {jsonl['with']:,} vs {jsonl['without']:,} bytes "
        f"(ratio {jsonl['with'] / jsonl['without']:.2f}); segment {seg['with']:,} vs {seg['without']:,} bytes "
        f"(ratio {seg['with'] / seg['without']:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
