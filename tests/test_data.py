"""Training data: GSM8K from local files, any JSONL/Parquet with chosen fields, synthetic problems."""

from __future__ import annotations

import json

import pytest
from support.paths import SHARED_DATA

from grpo_tui.engine.config import DataConfig, PresetError, PromptConfig
from grpo_tui.engine.data.loader import check_files, load_rows, to_dataset
from grpo_tui.engine.data.synthetic import generate

GSM8K_TRAIN = SHARED_DATA / "gsm8k" / "train.jsonl"
needs_gsm8k = pytest.mark.skipif(not GSM8K_TRAIN.exists(), reason="../shared/data/gsm8k not present")


@needs_gsm8k
def test_gsm8k_local_file_all_rows():
    rows, report = load_rows(DataConfig(source="gsm8k", data_files=[str(GSM8K_TRAIN)], shuffle=False), seed=0)
    assert report.rows_total == 7473 and report.rows_used == 7473 and not report.skipped
    assert rows[0]["answer"] == "72"  # Natalia's clips: "#### 72"
    assert all("," not in r["answer"] for r in rows), "thousands separators are removed from gold answers"
    assert any(r["answer"] == "1080" for r in rows)


def test_unusable_rows_are_skipped_and_counted(tmp_path):
    f = tmp_path / "mixed.jsonl"
    lines = [
        {"q": "What is 2+2?", "a": "4"},
        {"q": "", "a": "1"},
        {"q": "No gold?", "a": ""},
        {"q": "Missing answer field"},
        {"q": "  ", "a": "3"},
    ]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken json\n[1, 2]\n")
    rows, report = load_rows(
        DataConfig(source="file", data_files=[str(f)], question_field="q", answer_field="a", gold_format="plain"),
        seed=0,
    )
    assert rows == [{"question": "What is 2+2?", "answer": "4"}]
    assert report.rows_total == 7
    assert dict(report.skipped) == {"empty_question": 2, "no_gold": 2, "bad_json": 2}
    assert report.as_event()["rows_skipped"] == 6


def test_parquet_and_gold_formats(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "p.parquet"
    pq.write_table(
        pa.table(
            {
                "problem": ["Half of one?", "Two times three?"],
                "solution": ["So it is $\\boxed{\\frac{1}{2}}$.", "We get 6.\n#### 6"],
            }
        ),
        f,
    )
    rows, _ = load_rows(
        DataConfig(
            source="file", data_files=[str(f)], question_field="problem", answer_field="solution", shuffle=False
        ),
        seed=0,
    )
    assert [r["answer"] for r in rows] == ["\\frac{1}{2}", "6"]  # auto: boxed, then gsm8k


def test_no_usable_rows_is_a_clear_error(tmp_path):
    f = tmp_path / "empty.jsonl"
    f.write_text(json.dumps({"question": "x"}) + "\n")
    with pytest.raises(PresetError, match="no usable rows"):
        load_rows(DataConfig(source="file", data_files=[str(f)]), seed=0)


def test_missing_data_file_fails_preflight(tmp_path):
    with pytest.raises(PresetError, match="does not exist"):
        check_files(DataConfig(source="gsm8k", data_files=[str(tmp_path / "nope.jsonl")]))


def test_synthetic_problems_are_deterministic_and_correct():
    a, b = generate(50, 2, seed=1), generate(50, 2, seed=1)
    assert a == b and a != generate(50, 2, seed=2)
    for level in (1, 2, 3):
        for p in generate(200, level, seed=0):
            assert p["question"].endswith("now?") and int(p["answer"]) >= 0
    # difficulty 1: one operation; check the arithmetic of a few by reading the numbers back
    import re

    for p in generate(100, 1, seed=3):
        start = int(re.search(r"has (\d+)", p["question"]).group(1))
        n = int(re.findall(r"\d+", p["question"])[1])
        q = p["question"]
        expected = (
            start + n
            if "more" in q
            else start - n
            if ("give away" in q or "lose" in q)
            else start // n
            if "boxes" in q
            else start * n
        )
        assert int(p["answer"]) == expected, q


GOLDEN = [
    "Eli has 2 coins. A friend gives them 9 more coins. How many coins does Eli have now?",
    "Hana has 5 cookies. Then the number of cookies becomes 2 times as many. How many cookies does Hana have now?",
]


def test_synthetic_operations_are_read_back_from_the_text():
    from grpo_tui.engine.data.synthetic import operations

    for level in (1, 2, 3):
        assert all(operations(p["question"]) == p["operation"].split("+") for p in generate(200, level, seed=5))
    ops = {op for p in generate(300, 1, seed=5) for op in operations(p["question"])}
    assert ops == {"add", "sub", "mul", "div"}
    q = (
        "Omar has 4 shells. They lose 3 shells. Then they multiply their shells by 2. "
        "How many shells does Omar have now?"
    )
    assert operations(q) == ["sub", "mul"] and operations("What is 2 + 2?") == []
    # the first seeds' problems, pinned: every recorded synthetic run and eval used exactly these
    assert [p["question"] for p in generate(2, 1, seed=0)] == GOLDEN


@pytest.mark.parametrize("fmt, tag", [("reasoning", "<reasoning>"), ("think", "<think>")])
def test_prompts_go_through_the_chat_template(fmt, tag):
    from transformers import AutoTokenizer

    from grpo_tui.engine.models import ensure_smollm2

    tok = AutoTokenizer.from_pretrained(ensure_smollm2())
    ds = to_dataset(
        [{"question": "Ann has 2 cats. How many now?", "answer": "2"}], PromptConfig(format=fmt, one_shot=True)
    )
    msgs = ds[0]["prompt"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert tag in text and text.rstrip().endswith("<|im_start|>assistant")
    assert ds[0]["answer"] == "2"


def _kinds(rows):
    from grpo_tui.engine.data.synthetic import operations

    return ["+".join(operations(r["question"])) for r in rows]


def test_balance_by_takes_one_row_of_each_kind_a_round():
    cfg = DataConfig(source="synthetic", synthetic_size=400, balance_by="operation")
    rows, report = load_rows(cfg, seed=2)
    kinds = _kinds(rows)
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert set(counts) == {"add", "sub", "mul", "div"} and len(set(counts.values())) == 1  # an even mix
    per_kind = counts["add"]
    natural = [p["operation"] for p in generate(400, 1, 2)]
    assert per_kind == min(natural.count(k) for k in counts)  # capped at the rarest kind's count
    assert report.skipped["balance"] == 400 - 4 * per_kind == 400 - report.rows_used
    assert all(len(set(kinds[i : i + 4])) == 4 for i in range(0, len(kinds), 4))  # every round holds each kind once
    assert "operation" not in rows[0]  # the balancing column leaves unless asked for as an extra field
    assert rows == load_rows(cfg, seed=2)[0] and rows != load_rows(cfg, seed=3)[0]
    # without balancing, seed 2's shuffled rows hold runs of one kind: what balancing is for
    plain = _kinds(load_rows(DataConfig(source="synthetic", synthetic_size=400), seed=2)[0])
    assert max(len(set(plain[i : i + 4])) for i in range(0, 400, 4)) == 4
    assert min(len(set(plain[i : i + 4])) for i in range(0, 400, 4)) < 4


def test_balance_by_a_file_column_and_its_errors(tmp_path):
    f = tmp_path / "levels.jsonl"
    rows = [{"q": f"What is {i}+1?", "a": str(i + 1), "level": "easy" if i % 3 else "hard"} for i in range(30)]
    rows.append({"q": "No level?", "a": "0"})
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = dict(source="file", data_files=[str(f)], question_field="q", answer_field="a")
    out, report = load_rows(DataConfig(**base, balance_by="level", extra_fields=["level"]), seed=0)
    # three kinds: easy (20), hard (10), and the row without the field (1): one of each
    assert [r["level"] for r in out] in (
        ["easy", "hard", None],
        ["easy", None, "hard"],
        ["hard", "easy", None],
        ["hard", None, "easy"],
        [None, "easy", "hard"],
        [None, "hard", "easy"],
    )
    assert report.skipped["balance"] == 28
    with pytest.raises(PresetError, match="balance_by = 'levle': no row has that field; the rows have: a, level, q"):
        load_rows(DataConfig(**base, balance_by="levle"), seed=0)
