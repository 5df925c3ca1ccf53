"""The rollout store: writer, segments, readers, filters, prompt history, export, damaged runs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from support.rollout_store import PROMPTS, completion, group_for, write_run

from grpo_tui.rundir.rollouts import (
    Chunk,
    CompletionRecord,
    ReadReport,
    RolloutFilter,
    RolloutReader,
    Rollouts,
    RolloutWriter,
    list_segments,
    open_rollouts,
    parse_range,
    read_rollouts,
    write_segment,
)

NAMES = ["correctness", "format"]


@pytest.fixture
def run(tmp_path) -> Path:
    write_run(tmp_path / "run")
    return tmp_path / "run"


# ---------------------------------------------------------------------------- writer and segments


def test_jsonl_stays_complete_and_segments_cover_it(run):
    lines = (run / "rollouts.jsonl").read_bytes().splitlines()
    assert len(lines) == 4 * 3
    # the dashboard's tail indexes long files by this prefix
    assert all(re.match(rb'^\{"v": 1, "step": \d+, "group": \d+', line) for line in lines)
    segs = list_segments(run / "rollouts")
    assert [(s, e) for s, e, _ in segs][0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:])), "segments are contiguous byte ranges"
    assert segs[-1][1] == (run / "rollouts.jsonl").stat().st_size, "close() sealed the tail"
    assert len(segs) == 2  # every 2 steps
    assert not [p for p in (run / "rollouts").iterdir() if p.name.startswith(".")], "no temporary files left"


def test_store_matches_the_jsonl_group_for_group(run):
    groups, skipped = read_rollouts(run / "rollouts.jsonl")
    r = open_rollouts(run)
    assert skipped == 0 and r.report.segments == 2 and r.report.jsonl_bytes == 0
    assert r.num_groups == len(groups) == 12 and r.num_completions == 48
    assert [r.group_record(i) for i in range(r.num_groups)] == groups
    assert read_rollouts(run) == (groups, 0), "a run directory works as well as the file"


def test_tail_after_the_last_segment_is_read_from_jsonl(tmp_path):
    write_run(tmp_path / "r", steps=5, segment_steps=2, close=False)  # steps 1-4 sealed, step 5 in the tail
    r = open_rollouts(tmp_path / "r")
    assert r.report.segments == 2 and r.report.jsonl_bytes > 0
    assert list(r.steps) == [1, 2, 3, 4, 5]
    assert [r.group_record(i) for i in range(r.num_groups)] == read_rollouts(tmp_path / "r")[0]


def test_writer_takes_a_run_dir_and_continues_after_restart(tmp_path):
    d = tmp_path / "r"
    write_run(d, steps=3, segment_steps=2, close=False)  # step 3 unsealed, engine "killed"
    w = RolloutWriter(d, segment_steps=2)  # a resumed engine: picks up the unsealed step
    prompt, gold, comps = group_for(4, 0)
    w.write_group(4, 0, prompt, gold, comps)
    w.flush()
    segs = list_segments(d / "rollouts")
    assert len(segs) == 2 and segs[1][0] == segs[0][1], "the new segment covers the old engine's tail too"
    r = open_rollouts(d)
    assert r.report.jsonl_bytes == 0 and list(r.steps) == [1, 2, 3, 4]


def test_failed_seal_never_breaks_training(tmp_path, capsys):
    d = tmp_path / "r"
    d.mkdir()
    (d / "rollouts").write_text("not a directory")  # segments cannot be written
    w = write_run(d, steps=3, segment_steps=1)
    assert w.seal_errors and "not written" in capsys.readouterr().err
    r = open_rollouts(d)
    assert r.num_groups == 9 and list(r.steps) == [1, 2, 3], "everything is still in the JSONL"


def test_extra_fields_survive_the_segment(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    w = RolloutWriter(d, segment_steps=1)
    comps = [dict(completion("x <answer>5</answer>", "5", "5"), logprob=-1.5)]
    w.write_group(1, 0, "q", "5", comps, source="gsm8k", index=7)
    w.close()
    r = open_rollouts(d)
    assert r.report.segments == 1
    rec = r.group_record(0)
    assert rec["source"] == "gsm8k" and rec["index"] == 7 and rec["completions"][0]["logprob"] == -1.5
    assert rec == read_rollouts(d)[0][0]


# ---------------------------------------------------------------------------- summary, filters


def test_step_summary(run):
    r = open_rollouts(run)
    s = r.summary()
    assert list(s.step) == [1, 2, 3, 4] and list(s.groups) == [3] * 4 and list(s.completions) == [12] * 4
    # groups 0 and 1 answer right for i < step; group 2 always right -> step 1: 1+1+4 of 12 right
    assert s.accuracy[0] == pytest.approx(6 / 12)
    assert s.accuracy[3] == pytest.approx((4 + 3 + 4) / 12)  # group 1's last completion is truncated
    assert s.zero_std_frac[0] == pytest.approx(1 / 3)
    assert s.zero_std_frac[3] == pytest.approx(2 / 3)  # step 4: group 0 all right too
    assert s.truncated_frac[0] == pytest.approx(1 / 12)
    assert s.mean_tokens[0] == pytest.approx((25 + 25 + 20) / 3)
    totals = [c["total"] for g in read_rollouts(run)[0] if g["step"] == 2 for c in g["completions"]]
    assert s.mean_reward[1] == pytest.approx(sum(totals) / len(totals))


def expected(run: Path, pred) -> int:
    return sum(1 for g in read_rollouts(run)[0] for c in g["completions"] if pred(g, c))


@pytest.mark.parametrize(
    "f, pred",
    [
        (RolloutFilter(correct=True), lambda g, c: c["correct"]),
        (RolloutFilter(correct=False), lambda g, c: not c["correct"]),
        (RolloutFilter(truncated=True), lambda g, c: c["truncated"]),
        (RolloutFilter(truncated=False), lambda g, c: not c["truncated"]),
        (RolloutFilter(zero_std=True), lambda g, c: len({x["total"] for x in g["completions"]}) == 1),
        (RolloutFilter(zero_std=False), lambda g, c: len({x["total"] for x in g["completions"]}) > 1),
        (RolloutFilter(reward_min=1.0), lambda g, c: c["total"] >= 1.0),
        (RolloutFilter(reward_min=0.1, reward_max=0.6), lambda g, c: 0.1 <= c["total"] <= 0.6),
        (RolloutFilter(step_min=2, step_max=3), lambda g, c: 2 <= g["step"] <= 3),
        (RolloutFilter(step_max=1), lambda g, c: g["step"] == 1),
        (RolloutFilter(text="TRY 2"), lambda g, c: "try 2" in c["text"]),
        (RolloutFilter(text="apples"), lambda g, c: "apples" in g["prompt"]),
        (RolloutFilter(text="/<answer>10[0-9]</answer>/"), lambda g, c: re.search(r"<answer>10\d</answer>", c["text"])),
        (
            RolloutFilter(correct=False, truncated=False, zero_std=False, step_min=2, text="try"),
            lambda g, c: (
                not c["correct"]
                and not c["truncated"]
                and len({x["total"] for x in g["completions"]}) > 1
                and g["step"] >= 2
                and "try" in c["text"]
            ),
        ),
    ],
)
def test_filters_match_a_plain_python_reading(run, f, pred):
    r = open_rollouts(run)
    sel = r.select(f)
    assert sel.count == expected(run, pred) > 0
    assert sel.group_matches.sum() == sel.count
    summary = r.summary(sel)
    assert summary.matches.sum() == sel.count


def test_filter_with_no_match_and_empty_filter(run):
    r = open_rollouts(run)
    assert r.select(RolloutFilter(text="no such words")).count == 0
    assert r.select(RolloutFilter(correct=True, reward_max=0.1)).count == 0
    assert r.select(RolloutFilter()).count == r.num_completions
    assert RolloutFilter().is_empty() and not RolloutFilter(text="x").is_empty()
    assert "incorrect" in RolloutFilter(correct=False).describe()


def test_parse_range():
    assert parse_range("") == (None, None)
    assert parse_range("0.5..2") == (0.5, 2.0)
    assert parse_range("..2") == (None, 2.0) and parse_range("1..") == (1.0, None)
    assert parse_range("-1..-0.5") == (-1.0, -0.5)
    assert parse_range("7", int) == (7, 7)
    with pytest.raises(ValueError):
        parse_range("3..1")
    with pytest.raises(ValueError):
        parse_range("abc")


# ---------------------------------------------------------------------------- prompt history


def test_prompt_history_follows_one_prompt_across_steps(tmp_path):
    d = tmp_path / "r"
    write_run(d, steps=4, groups=4)  # groups 0 and 3 share PROMPTS[0]
    r = open_rollouts(d)
    gid = int(r.step_groups(2)[0])
    hist = r.history(gid)
    assert [int(r.g_step[g]) for g in hist] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert {r.prompt[int(g)].as_py() for g in hist} == {PROMPTS[0]}
    # answers change as training goes on: more of group 0 is right at each step
    assert [int(r.g_correct[g]) for g in hist if int(r.g_group[g]) == 0] == [1, 2, 3, 4]
    other = r.history(int(r.step_groups(1)[1]))
    assert len(other) == 4 and gid not in other


# ---------------------------------------------------------------------------- export


def test_export_writes_the_filtered_completions(run, tmp_path):
    r = open_rollouts(run)
    sel = r.select(RolloutFilter(correct=False, step_min=3))
    out = tmp_path / "out.jsonl"
    assert r.export_jsonl(out, sel.mask) == sel.count
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == sel.count > 0
    assert all(not x["correct"] and x["step"] >= 3 for x in rows)
    assert set(rows[0]) >= {
        "step",
        "group",
        "index",
        "prompt",
        "gold",
        "text",
        "extracted",
        "correct",
        "rewards",
        "total",
        "advantage",
        "tokens",
        "truncated",
    }
    g = next(g for g in read_rollouts(run)[0] if g["step"] == rows[0]["step"] and g["group"] == rows[0]["group"])
    assert g["completions"][rows[0]["index"]]["text"] == rows[0]["text"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    assert r.export_jsonl(tmp_path / "all.jsonl") == r.num_completions


# ---------------------------------------------------------------------------- live runs


def test_reader_follows_a_growing_run(tmp_path):
    d = tmp_path / "r"
    w = write_run(d, steps=1, segment_steps=2, close=False)
    reader = RolloutReader(d)
    snap = Rollouts(reader.read_new(), reader.report)
    assert list(snap.steps) == [1]
    assert reader.read_new() == []
    prompt, gold, comps = group_for(2, 0)
    w.write_group(2, 0, prompt, gold, comps)
    w.flush()  # seals steps 1-2: the reader keeps reading the JSONL, unaffected
    line = json.dumps(
        {"v": 1, "step": 3, "group": 0, "prompt": "p", "gold": "1", "completions": [completion("t", "1", "1")]}
    ).encode()
    with open(d / "rollouts.jsonl", "ab") as f:
        f.write(line[:20])  # the engine is mid-write
    snap = snap.extend(reader.read_new(), reader.report)
    assert list(snap.steps) == [1, 2] and snap.num_groups == 4 and reader.report.partial == 20
    with open(d / "rollouts.jsonl", "ab") as f:
        f.write(line[20:] + b"\n")
    snap = snap.extend(reader.read_new(), reader.report)
    assert list(snap.steps) == [1, 2, 3] and reader.report.partial == 0
    assert snap.select(RolloutFilter(step_min=3)).count == 1


def test_resumed_run_shows_the_latest_record_of_a_group(tmp_path):
    d = tmp_path / "r"
    write_run(d, steps=3, segment_steps=2)
    write_run(d, steps=2, start=3, segment_steps=2)  # resumed from checkpoint 2: step 3 redone
    r = open_rollouts(d)
    assert list(r.steps) == [1, 2, 3, 4] and r.num_groups == 12 and r.report.replaced == 3
    assert any("recorded again" in m for m in r.report.messages())
    assert len(r.step_groups(3)) == 3


# ---------------------------------------------------------------------------- damaged runs


def test_half_written_last_record_is_skipped_and_said(tmp_path):
    d = tmp_path / "r"
    write_run(d, steps=3, segment_steps=10, close=False)
    with open(d / "rollouts.jsonl", "ab") as f:
        f.write(b'{"v": 1, "step": 4, "group": 0, "prompt": "cut sho')
    r = open_rollouts(d)
    assert list(r.steps) == [1, 2, 3] and r.report.partial > 0
    assert any("unfinished last line" in m for m in r.report.messages())
    # a restarted engine ends the broken line first, so its own records stay whole
    w = RolloutWriter(d, segment_steps=10)
    prompt, gold, comps = group_for(4, 0)
    w.write_group(4, 0, prompt, gold, comps)
    w.close()
    r = open_rollouts(d)
    assert list(r.steps) == [1, 2, 3, 4] and r.report.skipped == 0 and r.report.segments == 1
    groups, skipped = read_rollouts(d)
    assert skipped == 1 and len(groups) == 10


def test_corrupt_lines_and_bad_records_are_counted(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    good = {"v": 1, "step": 1, "group": 0, "prompt": "p", "gold": "1", "completions": [completion("t", "1", "1")]}
    lines = [
        json.dumps(good),
        "{not json",
        "[1, 2]",
        json.dumps({"v": 1, "group": 0}),
        json.dumps({**good, "step": 2, "completions": [{"text": 5, "rewards": "bad", "tokens": "x"}, 7]}),
    ]
    (d / "rollouts.jsonl").write_text("\n".join(lines) + "\n")
    r = open_rollouts(d)
    assert list(r.steps) == [1, 2] and r.report.skipped == 2 and r.report.invalid == 1
    rec = r.group_record(1)
    assert rec["completions"][0]["text"] == "5" and rec["completions"][0]["tokens"] == 0
    assert rec["completions"][1]["text"] == "" and len(rec["completions"]) == 2
    msgs = " ".join(r.report.messages())
    assert "2 damaged line(s)" in msgs and "1 record(s) without step" in msgs


def test_newer_schema_is_read_for_known_fields(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    rec = {
        "v": 3,
        "step": 1,
        "group": 0,
        "prompt": "p",
        "gold": "1",
        "future": {"x": 1},
        "completions": [dict(completion("t <answer>1</answer>", "1", "1"), judge="llm")],
    }
    (d / "rollouts.jsonl").write_text(json.dumps(rec) + "\n")
    r = open_rollouts(d)
    assert r.num_completions == 1 and r.report.newer == 1
    assert any("newer schema (v3" in m for m in r.report.messages())
    assert r.group_record(0)["future"] == {"x": 1} and r.group_record(0)["completions"][0]["judge"] == "llm"


def test_missing_rollouts(tmp_path):
    r = open_rollouts(tmp_path)
    assert r.num_groups == 0 and r.report.missing and len(r.steps) == 0
    assert r.select(RolloutFilter(text="x")).count == 0 and r.summary().step.size == 0
    assert "no rollouts.jsonl" in r.report.messages()[0]


def test_missing_jsonl_still_shows_the_segments(run):
    (run / "rollouts.jsonl").unlink()
    r = open_rollouts(run)
    assert r.report.missing and r.num_groups == 12
    assert "sealed segments only" in r.report.messages()[0]


def test_damaged_segment_falls_back_to_jsonl(run):
    segs = list_segments(run / "rollouts")
    segs[0][2].write_bytes(segs[0][2].read_bytes()[:100])  # truncated segment
    r = open_rollouts(run)
    assert r.num_groups == 12 and r.report.segments == 1 and r.report.jsonl_bytes == segs[0][1]
    assert any("unreadable" in m for m in r.report.messages())
    assert [r.group_record(i) for i in range(12)] == read_rollouts(run)[0]


def test_deleted_segment_and_stale_segment(run):
    segs = list_segments(run / "rollouts")
    segs[0][2].unlink()  # a hole: parsed from the JSONL
    size = (run / "rollouts.jsonl").stat().st_size
    stale = run / "rollouts" / f"seg-{size:012d}-{size + 500:012d}.arrow"  # describes bytes that don't exist
    os.link(segs[1][2], stale)
    r = open_rollouts(run)
    assert r.num_groups == 12 and r.report.segments == 1
    assert any("past the end" in m for m in r.report.messages())
    assert [r.group_record(i) for i in range(12)] == read_rollouts(run)[0]


def test_segment_with_foreign_columns_is_refused_not_trusted(run, tmp_path):
    import pyarrow as pa

    segs = list_segments(run / "rollouts")
    table = pa.table({"step": pa.array(["one"]), "completions": pa.array([1])})
    with pa.OSFile(str(segs[0][2]), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
        w.write_table(table)
    r = open_rollouts(run)
    assert r.num_groups == 12 and any("unreadable" in m for m in r.report.messages())


def test_nothing_is_executed_or_unpickled():
    root = Path(__file__).resolve().parents[1]
    files = [*(root / "rundir" / "rollouts").glob("*.py"), *(root / "tui" / "browser").rglob("*.py")]
    assert len(files) >= 8
    for path in files:
        rel, src = path.relative_to(root), path.read_text()
        bad = re.findall(
            r"import pickle|pickle\.|\beval\(|\bexec\(|to_pandas\(|import marshal|__import__\(|"
            r"py_extension_type",
            src,
        )
        assert not bad, f"{rel} uses {bad}"


def test_store_does_not_import_textual():
    import subprocess
    import sys

    code = "import sys, rundir.rollouts; print('textual' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert out.stdout.strip() == "False"


def test_chunk_round_trips_through_a_segment(tmp_path):
    groups = [
        {
            "v": 1,
            "step": s,
            "group": 0,
            "prompt": f"p{s}",
            "gold": "1",
            "completions": [completion("é ✓ text", None if s % 2 else "1", "1", truncated=bool(s % 2))],
        }
        for s in range(1, 5)
    ]
    chunk = Chunk.from_records(groups, ReadReport())
    path = write_segment(tmp_path, 0, 10, chunk)
    from grpo_tui.rundir.rollouts import read_segment

    again = read_segment(path)
    assert (
        again.records() == chunk.records() == [dict(g, completions=[dict(c) for c in g["completions"]]) for g in groups]
    )
    assert np.array_equal(again.truncated, [True, False, True, False])


def test_resuming_a_large_old_run_does_not_load_it_into_the_engine(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    lines = []
    for step in (1, 2, 3):  # written before segments existed
        prompt, gold, comps = group_for(step, 0)
        lines.append(
            json.dumps({"v": 1, "step": step, "group": 0, "prompt": prompt, "gold": gold, "completions": comps})
        )
    (d / "rollouts.jsonl").write_text("\n".join(lines) + "\n")
    small = len(lines[0]) // 2  # "large" relative to this segment size
    w = RolloutWriter(d, segment_steps=1, segment_bytes=small)
    assert w._buffer == []
    w.write_group(4, 0, *group_for(4, 0))
    w.close()
    segs = list_segments(d / "rollouts")
    assert len(segs) == 1 and segs[0][0] > 0, "only the new step is sealed"
    r = open_rollouts(d)
    assert list(r.steps) == [1, 2, 3, 4] and r.report.segments == 1 and r.report.jsonl_bytes == segs[0][0]
    assert [r.group_record(i) for i in range(4)] == read_rollouts(d)[0]


def test_record_types_round_trip_and_lead_with_the_index_keys(tmp_path):
    """GroupRecord is the one shape of a line: written, read back and indexed without parsing."""
    from grpo_tui.rundir.rollouts import GroupRecord, RolloutTail
    from grpo_tui.rundir.rollouts.records import line_key

    rec = GroupRecord(
        step=3,
        group=1,
        prompt="q",
        gold="5",
        extra={"source": "gsm8k"},
        completions=[
            CompletionRecord(
                text="t",
                extracted="5",
                correct=True,
                rewards={"a": 1 / 3, "b": None},
                total=float("nan"),
                advantage=0.25,
                tokens=4,
                truncated=False,
                extra={"logprob": -1.5},
            )
        ],
    )
    d = rec.to_dict()
    assert list(d)[:3] == ["v", "step", "group"] and d["completions"][0]["rewards"]["a"] == 0.333333
    assert d["completions"][0]["total"] is None and d["completions"][0]["logprob"] == -1.5
    assert GroupRecord.from_dict(d).to_dict() == d
    assert line_key(rec.to_line().rstrip(b"\n")) == (3, 1, None)  # found from the head, not parsed
    other_order = json.dumps({"group": 2, "completions": [], "step": 7}).encode()
    assert line_key(other_order)[:2] == (7, 2)  # another writer's key order: parsed
    w = RolloutWriter(tmp_path / "rollouts.jsonl")
    w.write(rec)
    w.close()
    assert read_rollouts(tmp_path)[0] == [d]
    lines = RolloutTail(tmp_path / "rollouts.jsonl").read_new()
    assert [(x.step, x.group, x.record) for x in lines] == [(3, 1, d)]


def test_run_directory_doc_lists_the_record_fields():
    """docs/run-directory.md's two rollouts.jsonl tables name exactly the fields of the record types."""
    from grpo_tui.rundir.rollouts import COMPLETION_KEYS, GROUP_KEYS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "run-directory.md").read_text()
    section = doc.split("## rollouts.jsonl", 1)[1].split("### rollouts/", 1)[0]
    tables = [
        [line.split("|")[1].strip().strip("`") for line in block.splitlines() if line.startswith("| `")]
        for block in section.split("Each completion:")
    ]
    assert set(tables[0]) == set(GROUP_KEYS) and set(tables[1]) == set(COMPLETION_KEYS)
