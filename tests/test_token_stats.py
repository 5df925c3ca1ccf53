"""Per-token log-probabilities and entropies: recorded from the loss's own pass, stored, and shown token by token.

- A real RecordingGRPOTrainer (tiny random Llama, two micro-batches per generation batch, so TRL shuffles and
  splits the rows) records every completion's arrays, and each row's arrays are the loss pass's values for
  that very row (its token ids at loss time equal the recorded ones).
- A real headless run writes them at the right length into rollouts.jsonl and its segments.
- The store keeps older records and format-1 segments readable; the token view (`t`) in the dashboard and
  the browser shows them (Pilot and snapshots at 80x24 and 200x50).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from support.dashboard import dashboard, run_coroutine, wait_for
from support.processes import run_engine
from support.synthetic import write_synthetic_run

from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.rollouts import (
    Chunk,
    CompletionRecord,
    ReadReport,
    RolloutWriter,
    open_rollouts,
    read_rollouts,
    read_segment,
    write_segment,
)
from grpo_tui.rundir.rollouts.records import TOKEN_ARRAYS, pack_array

G = 4


def _records(run: Path) -> list[CompletionRecord]:
    groups, skipped = read_rollouts(run)
    assert skipped == 0
    return [CompletionRecord.from_dict(c) for g in groups for c in g["completions"]]


def _check_lengths(rec: CompletionRecord) -> None:
    for name in TOKEN_ARRAYS:
        a = getattr(rec, name)
        assert a is not None and len(a) == rec.tokens, (name, rec.tokens, a)
    assert rec.token_logprobs.dtype == np.float16 and rec.token_entropies.dtype == np.float16
    assert np.all(rec.token_logprobs <= 0) and np.all(rec.token_entropies >= 0)
    start = len(rec.text) - int(rec.token_chars.sum())
    assert start >= 0 and int(rec.token_chars.sum()) > 0


# ------------------------------------------------------------------ the engine: in process, row by row


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two steps of a real RecordingGRPOTrainer with a spy on the loss: (run dir, what the loss saw)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from grpo_tui.engine.models import ensure_tiny_random
    from grpo_tui.engine.train.grpo import RecordingGRPOTrainer
    from grpo_tui.engine.train.rollout_recorder import RolloutRecorder
    from grpo_tui.engine.train.trl_hooks import ROW_KEY

    path = ensure_tiny_random(log=lambda *a: None)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ds = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"What is {i} plus {i + 3}?"}],
                "question": f"What is {i} plus {i + 3}?",
                "answer": str(2 * i + 3),
            }
            for i in range(8)
        ]
    )

    def varied(completions, **kwargs):
        return [float(len(c[0]["content"]) % 3) for c in completions]

    run = tmp_path_factory.mktemp("token-stats")
    args = GRPOConfig(
        output_dir=str(run / "out"),
        per_device_train_batch_size=G,
        gradient_accumulation_steps=2,
        num_generations=G,
        max_completion_length=10,
        max_steps=2,
        use_cpu=True,
        report_to=[],
        logging_steps=1,
        disable_tqdm=True,
        gradient_checkpointing=False,
        save_strategy="no",
        seed=0,
    )
    trainer = RecordingGRPOTrainer(
        model=model, reward_funcs=[varied], args=args, train_dataset=ds, processing_class=tok
    )
    trainer.recorder = RolloutRecorder(RolloutWriter(run), ["varied"], [1.0], G, "reasoning", 10, tokenizer=tok)
    seen: list[dict] = []  # per loss call: step, rows, completion ids and the pass's values
    loss, on_stats = trainer._compute_loss, trainer.on_token_stats

    def spy_loss(model, inputs):
        mask = inputs["completion_mask"].bool()
        seen.append(
            {
                "step": trainer.state.global_step + 1,
                "rows": inputs[ROW_KEY].tolist(),
                "ids": [ids[m].tolist() for ids, m in zip(inputs["completion_ids"], mask)],
            }
        )
        return loss(model, inputs)

    def spy_stats(rows, logps, entropies):
        seen[-1].update(logps=logps.detach().clone(), entropies=entropies.detach().clone())
        on_stats(rows, logps, entropies)

    trainer._compute_loss, trainer.on_token_stats = spy_loss, spy_stats
    trainer.train()
    trainer.recorder.close()
    return run, seen


def test_each_recorded_row_holds_the_loss_pass_values_of_that_row(trained):
    run, seen = trained
    groups, _ = read_rollouts(run)
    assert [g["step"] for g in groups] == [1, 1, 2, 2]  # a generation batch of 2 groups per step
    assert [len(s["rows"]) for s in seen] == [G, G, G, G], "two micro-batches of each generation batch"
    for s in seen:
        recs = [CompletionRecord.from_dict(c) for g in groups if g["step"] == s["step"] for c in g["completions"]]
        for j, r in enumerate(s["rows"]):
            rec = recs[r]
            n = rec.tokens
            # the row the loss scored is the recorded row: same tokens, and its log-probabilities and entropies
            assert rec.token_ids.tolist() == s["ids"][j]
            assert np.array_equal(rec.token_logprobs, s["logps"][j, :n].to(torch.float16).numpy())
            assert np.array_equal(rec.token_entropies, s["entropies"][j, :n].to(torch.float16).numpy())
    rows = [s["rows"] for s in seen if s["step"] == 1]
    assert sorted(rows[0] + rows[1]) == list(range(2 * G))


def test_recorded_arrays_have_one_value_per_token_and_pieces_that_make_the_text(trained):
    run, _ = trained
    from transformers import AutoTokenizer

    from grpo_tui.engine.models import ensure_tiny_random

    tok = AutoTokenizer.from_pretrained(ensure_tiny_random(log=lambda *a: None))
    for rec in _records(run):
        _check_lengths(rec)
        assert rec.text == tok.decode(rec.token_ids.tolist(), skip_special_tokens=True)
        assert int(rec.token_chars.sum()) == len(rec.text)
        assert np.all(rec.token_entropies <= math.log(len(tok)) + 0.01)


def test_a_headless_run_records_token_arrays_in_jsonl_and_segments(tmp_path):
    run = tmp_path / "run"
    proc = run_engine(["--preset", "tiny", "--run-dir", str(run), "--max-steps", "2"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    recs = _records(RunDir(run).rollouts)
    assert len(recs) == 2 * 8
    for rec in recs:
        _check_lengths(rec)
    store = open_rollouts(run)
    assert store.report.segments == 1 and store.report.jsonl_bytes == 0, "read from the sealed segment"
    for c, rec in enumerate(recs):
        arrays = store.token_arrays(c)
        for name in TOKEN_ARRAYS:
            assert np.array_equal(arrays[name], getattr(rec, name)), name
    # the step's mean entropy TRL logged is the mean of the recorded per-token entropies
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["type"] == "step"]
    for e in steps:
        ent = np.concatenate(
            [r.token_entropies.astype(np.float64) for r, g in zip(recs, range(len(recs))) if g // 8 == e["step"] - 1]
        )
        assert ent.mean() == pytest.approx(e["metrics"]["entropy"], abs=0.01)


def test_record_token_stats_off_keeps_the_arrays_out_of_the_store(tmp_path):
    run = tmp_path / "run"
    proc = run_engine(
        [
            "--preset",
            "tiny",
            "--run-dir",
            str(run),
            "--max-steps",
            "1",
            "--set",
            "train.record_token_stats=false",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    store = open_rollouts(run)
    assert all(store.token_arrays(c).get("token_logprobs") is None for c in range(8))
    assert all(store.token_arrays(c).get("token_entropies") is None for c in range(8))


# ------------------------------------------------------------------ the recorder, without a model


def _recorder(tmp_path, **kw):
    from grpo_tui.engine.train.rollout_recorder import RolloutRecorder

    return RolloutRecorder(RolloutWriter(tmp_path), ["r"], [1.0], 2, "reasoning", 8, **kw)


def _batch(rec, step: int, ids: list[list[int]], token_stats: bool = True):
    rec.record(
        step=step,
        inputs=[{"question": "q", "answer": "1"}] * len(ids),
        completions=[[{"role": "assistant", "content": "x" * len(i)}] for i in ids],
        completion_ids=ids,
        rewards=torch.zeros(len(ids), 1),
        advantages=torch.zeros(len(ids)),
        eos_ids={0},
        token_stats=token_stats,
    )


def test_recorder_waits_for_every_row_then_writes_and_ignores_repeats(tmp_path):
    rec = _recorder(tmp_path)
    _batch(rec, 1, [[5, 6, 7], [5, 6]])
    assert rec.expects_token_stats()
    stats = torch.tensor([[[-0.5, -1.0, -2.0]], [[0.1, 0.2, 0.3]]])  # (2, rows, width)
    rec.add_token_stats(torch.tensor([1]), stats[0], stats[1])
    rec.wait()
    assert read_rollouts(tmp_path)[0] == [], "the batch waits for its other row"
    rec.add_token_stats(torch.tensor([0]), stats[0] * 2, stats[1] * 2)
    assert not rec.expects_token_stats()
    rec.add_token_stats(torch.tensor([0]), stats[0] * 9, stats[1] * 9)  # a second iteration over the rows: ignored
    rec.wait()
    (g,), _ = read_rollouts(tmp_path)
    a, b = (CompletionRecord.from_dict(c) for c in g["completions"])
    assert a.token_logprobs.tolist() == [-1.0, -2.0, -4.0]
    assert b.token_entropies.tolist() == pytest.approx([0.1, 0.2], abs=1e-3)
    assert a.token_ids.tolist() == [5, 6, 7] and b.tokens == 2
    rec.close()


def test_recorder_writes_a_batch_whose_rows_never_arrive_when_the_next_one_comes(tmp_path):
    rec = _recorder(tmp_path)
    _batch(rec, 1, [[5], [6]])
    _batch(rec, 2, [[7], [8]], token_stats=False)  # e.g. a loss that never reported: written without
    rec.close()
    groups, _ = read_rollouts(tmp_path)
    assert [g["step"] for g in groups] == [1, 2]
    first, second = groups
    assert "token_logprobs" not in first["completions"][0] and "token_ids" in first["completions"][0]
    assert not any(k in second["completions"][0] for k in TOKEN_ARRAYS), "recording turned off: no arrays"


def test_token_chars_cover_the_text_even_when_a_character_spans_tokens():
    from transformers import AutoTokenizer

    from grpo_tui.engine.models import ensure_tiny_random
    from grpo_tui.engine.train.token_stats import token_chars

    tok = AutoTokenizer.from_pretrained(ensure_tiny_random(log=lambda *a: None))
    for text in ["So the answer is 42.", "é ✓ 漢字 done", "a\n\nb"]:
        ids = tok.encode(text, add_special_tokens=False)
        chars = token_chars(tok, ids, text)
        assert chars is not None and int(chars.sum()) == len(text), text
    ids = tok.encode("x ✓", add_special_tokens=False)
    assert token_chars(tok, ids, "bootstrap: x ✓").sum() == 3, "a prefilled start belongs to no token"
    assert token_chars(tok, ids, "something else") is None
    assert token_chars(None, ids, "x ✓") is None


# ------------------------------------------------------------------ the store


def _arrays(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "token_ids": np.arange(n, dtype=np.int32),
        "token_chars": np.ones(n, dtype=np.uint16),
        "token_logprobs": -rng.random(n).astype(np.float16),
        "token_entropies": rng.random(n).astype(np.float16),
    }


def test_arrays_round_trip_through_jsonl_segment_and_snapshot(tmp_path):
    comps = [
        CompletionRecord(
            text="abcd",
            extracted=None,
            correct=False,
            rewards={"r": 0.0},
            total=0.0,
            advantage=0.5,
            tokens=4,
            truncated=False,
            **_arrays(4),
        ),
        CompletionRecord(
            text="old",
            extracted=None,
            correct=False,
            rewards={"r": 1.0},
            total=1.0,
            advantage=-0.5,
            tokens=1,
            truncated=False,
        ),
    ]  # written without arrays
    w = RolloutWriter(tmp_path, segment_steps=1)
    w.write_group(1, 0, "p", "1", comps)
    w.write_group(2, 0, "p", "1", comps)
    w.flush()  # step 1 sealed into a segment, step 2 left in the JSONL
    w.close()
    line = json.loads((tmp_path / "rollouts.jsonl").read_text().splitlines()[0])
    assert line["completions"][0]["token_logprobs"] == pack_array(comps[0].token_logprobs, "<f2")
    assert not any(k in line["completions"][1] for k in TOKEN_ARRAYS)
    store = open_rollouts(tmp_path)
    assert store.report.segments >= 1
    for c in (0, 2):
        got = store.token_arrays(c)
        for k, v in _arrays(4).items():
            assert got[k].dtype == v.dtype and np.array_equal(got[k], v), k
    assert all(v is None for v in store.token_arrays(1).values())
    assert store.group_record(0) == read_rollouts(tmp_path)[0][0]


def test_format_1_segments_and_damaged_arrays_still_read(tmp_path):
    import pyarrow as pa

    rec = {
        "v": 1,
        "step": 1,
        "group": 0,
        "prompt": "p",
        "gold": "1",
        "completions": [
            {
                "text": "t",
                "extracted": None,
                "correct": False,
                "rewards": {},
                "total": 0.0,
                "advantage": 0.0,
                "tokens": 1,
                "truncated": False,
                "token_logprobs": "not base64!",
                "token_ids": "AAA=",
            }
        ],
    }
    chunk = Chunk.from_records([rec], ReadReport())
    assert chunk.token_arrays(0) == dict.fromkeys(TOKEN_ARRAYS), "damaged or misaligned arrays read as absent"
    # a segment written before the token columns existed
    old_table = chunk.to_table({"format": 1}).drop_columns(list(TOKEN_ARRAYS))
    path = tmp_path / "seg-000000000000-000000000010.arrow"
    with pa.OSFile(str(path), "wb") as f, pa.ipc.new_file(f, old_table.schema) as wr:
        wr.write_table(old_table)
    again = read_segment(path)
    assert again.completions == 1 and again.token_arrays(0) == dict.fromkeys(TOKEN_ARRAYS)
    assert write_segment(tmp_path / "new", 0, 10, again).exists()


def test_segment_token_columns_are_read_only_when_asked_for(tmp_path):
    comps = [
        CompletionRecord(
            text="abcd",
            extracted=None,
            correct=False,
            rewards={},
            total=0.0,
            advantage=0.0,
            tokens=4,
            truncated=False,
            **_arrays(4, seed),
        )
        for seed in range(3)
    ]
    chunk = Chunk.from_records(
        [{"v": 1, "step": 1, "group": 0, "prompt": "p", "gold": "1", "completions": [c.to_dict() for c in comps]}],
        ReadReport(),
    )
    path = write_segment(tmp_path, 0, 10, chunk)
    lazy = read_segment(path)
    assert lazy.token is None and lazy.token_source == path, "opening a segment skips its token columns"
    assert np.array_equal(lazy.token_arrays(2)["token_entropies"], comps[2].token_entropies)
    lazy.unload_tokens()
    assert lazy.token is None
    assert read_segment(path, tokens=True).records() == chunk.records()


# ------------------------------------------------------------------ the token view


def _add_token_arrays(run: Path) -> None:
    """Give every completion of a synthetic run word-sized tokens with varied entropies (digits fork)."""
    out = []
    for line in (run / "rollouts.jsonl").read_text().splitlines():
        g = json.loads(line)
        for c in g["completions"]:
            pieces = re.findall(r"\s*[^\s<>]+|\s*<[^>]*>|\s+", c["text"])
            assert "".join(pieces) == c["text"]
            n = len(pieces)
            ent = np.array([2.5 if re.search(r"\d", p) else 0.2 + 0.15 * (i % 5) for i, p in enumerate(pieces)])
            c.update(
                tokens=n,
                token_ids=pack_array(np.arange(n), "<i4"),
                token_chars=pack_array(np.array([len(p) for p in pieces]), "<u2"),
                token_logprobs=pack_array(-ent * 0.6, "<f2"),
                token_entropies=pack_array(ent, "<f2"),
            )
        out.append(json.dumps(g))
    (run / "rollouts.jsonl").write_text("\n".join(out) + "\n")
    shutil.rmtree(run / "rollouts", ignore_errors=True)  # the segments held the arrays-less copy


def _token_run(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    write_synthetic_run(Path("runs/tokens"), 4, seed=5, max_steps=4)
    _add_token_arrays(Path("runs/tokens"))
    return Path("runs/tokens")


def test_dashboard_t_opens_the_token_view_and_it_toggles_and_moves(tmp_path, monkeypatch):
    from grpo_tui.tui.components.token_view import TokenScreen

    run = _token_run(tmp_path, monkeypatch)

    async def go() -> None:
        app = dashboard(run)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.state.steps and app.rollouts.steps and app.updates, what="history")
            await pilot.pause(0.2)
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, TokenScreen), what="token view")
            s = app.screen
            body = s.query_one("#token-body")
            text = "\n".join(strip.text for strip in body.lines)
            comp = s.comps[s.index]
            assert comp["text"].split()[0] in text.replace("\n", " ")
            assert "advantage" in str(s.query_one("#token-head").render())
            forks = str(s.query_one("#token-forks").render())
            assert "forking tokens:" in forks and "H 2.50" in forks  # the digits
            assert s.mode == "entropy"
            await pilot.press("s")
            assert s.mode == "logprob" and "1 - p(token)" in str(s.query_one("#token-head").render())
            first = s.index
            await pilot.press("full_stop")
            assert s.index == (first + 1) % len(s.comps)
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, TokenScreen), what="back")

    run_coroutine(go())


def test_browser_t_shows_a_completion_without_arrays_as_plain_text(tmp_path):
    from grpo_tui.tui.browser.app import BrowserApp, RolloutScreen
    from grpo_tui.tui.components.token_view import TokenScreen

    run = write_synthetic_run(tmp_path / "run", 2, seed=2, max_steps=2).run.root  # no token arrays

    async def go() -> None:
        app = BrowserApp(run, poll_s=0.1)
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for(
                pilot, lambda: isinstance(app.screen, RolloutScreen) and app.screen.gid is not None, what="load"
            )
            await pilot.press("t")
            await wait_for(pilot, lambda: isinstance(app.screen, TokenScreen), what="token view")
            text = " ".join(strip.text for strip in app.screen.query_one("#token-body").lines)
            assert "No per-token log-probabilities" in text

    run_coroutine(go())


def test_untrusted_token_text_is_not_markup():
    from grpo_tui.tui.components.token_view import TokenRow, render_tokens

    text = "[bold]x[/] [@click=app.quit]\x1b[2J"
    pieces = ["[bold]", "x", "[/] ", "[@click=app.quit]", "\x1b[2J"]
    row = TokenRow(
        text,
        None,
        np.array([len(p) for p in pieces], dtype=np.uint16),
        np.zeros(5, dtype=np.float16),
        np.ones(5, dtype=np.float16),
    )
    out = render_tokens(row, "entropy", 1.0, math.inf)
    assert out.plain == "[bold]x[/] [@click=app.quit]␛[2J"


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_token_view_snapshot(snap_compare, tmp_path: Path, monkeypatch, size) -> None:
    from grpo_tui.tui.browser.app import BrowserApp

    app = BrowserApp(_token_run(tmp_path, monkeypatch), poll_s=0.1)

    async def ready(pilot) -> None:
        await wait_for(pilot, lambda: getattr(app.screen, "gid", None) is not None, what="the rollouts")
        await pilot.press("t")
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=size, run_before=ready)


def test_a_browsed_store_keeps_only_a_few_segments_token_columns_in_memory(tmp_path):
    w = RolloutWriter(tmp_path, segment_steps=1)
    for step in range(1, 8):
        rec = CompletionRecord(
            text="abcd",
            extracted=None,
            correct=False,
            rewards={},
            total=0.0,
            advantage=0.0,
            tokens=4,
            truncated=False,
            **_arrays(4, step),
        )
        w.write_group(step, 0, "p", "1", [rec])
        w.flush()
    w.close()
    store = open_rollouts(tmp_path)
    assert len(store.chunks) == 7 and all(c.token is None for c in store.chunks)
    for c in range(7):
        assert np.array_equal(store.token_arrays(c)["token_ids"], np.arange(4))
    loaded = [c.token is not None for c in store.chunks]
    assert loaded == [False, False, False, True, True, True, True]


def test_a_live_browsers_new_snapshots_keep_the_bound_on_loaded_token_columns(tmp_path):
    from grpo_tui.rundir.rollouts import ReadReport

    w = RolloutWriter(tmp_path, segment_steps=1)
    for step in range(1, 8):
        rec = CompletionRecord(
            text="abcd",
            extracted=None,
            correct=False,
            rewards={},
            total=0.0,
            advantage=0.0,
            tokens=4,
            truncated=False,
            **_arrays(4, step),
        )
        w.write_group(step, 0, "p", "1", [rec])
        w.flush()
    w.close()
    store = open_rollouts(tmp_path)
    chunks = list(store.chunks)
    for c in range(7):  # each poll of a live browser gives a new snapshot over the same chunks
        assert np.array_equal(store.token_arrays(c)["token_ids"], np.arange(4))
        store = store.extend([], ReadReport())
    assert [c.token is not None for c in chunks] == [False, False, False, True, True, True, True]
