"""The one data loader: hub ids, local JSONL/Parquet/CSV, field templates, number golds with units, chat rows,
extra columns to rewards, and every data problem reported before the run directory exists (issues 12, 14, 15)."""

from __future__ import annotations

import json
import time

import pytest
from support.processes import run_engine, run_grpo_tui, write_preset

from grpo_tui.engine.config import DataConfig, PresetError, PromptConfig
from grpo_tui.engine.data.loader import FieldMap, drop_long_prompts, hub_records, load_rows, to_dataset
from grpo_tui.engine.eval.data import load_eval_data

SVAMP = [
    {
        "ID": "chal-1",
        "Body": "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack",
        "Question": "How much do you have to pay to buy each pack?",
        "Equation": "( 76.0 - 25.0 )",
        "Answer": 51.0,
    },
    {
        "ID": "chal-2",
        "Body": "Dan had $ 3 left with him after he bought a candy bar. If he had $ 4 at the start",
        "Question": "How much did the candy bar cost?",
        "Equation": "( 4.0 - 3.0 )",
        "Answer": 1.0,
    },
    {
        "ID": "chal-3",
        "Body": "A grocery store had 72 bottles of regular soda and 32 bottles of diet soda.",
        "Question": "How many bottles did they have in total?",
        "Equation": "( 72.0 + 32.0 )",
        "Answer": 145.0 - 41,
    },
]
ASDIV = [
    {
        "body": "Seven red apples and two green apples are in the basket.",
        "question": "How many apples are in the basket?",
        "answer": "9 (apples)",
        "formula": "7+2=9",
    },
    {
        "body": "Ellen has six more balls than Marin. Marin has nine balls.",
        "question": "How many balls does Ellen have?",
        "answer": "15 (balls)",
        "formula": "6+9=15",
    },
    {
        "body": "Janet has nine oranges and Sharon has seven oranges.",
        "question": "How many oranges do Janet and Sharon have together?",
        "answer": "16 (oranges)",
        "formula": "9+7=16",
    },
]


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_svamp_template_and_float_golds(tmp_path):
    f = jsonl(tmp_path / "svamp.jsonl", SVAMP)
    rows, report = load_rows(
        DataConfig(
            source="file",
            data_files=[str(f)],
            question_template="{Body} {Question}",
            answer_field="Answer",
            gold_format="number",
            shuffle=False,
        ),
        seed=0,
    )
    assert [r["answer"] for r in rows] == ["51", "1", "104"] and report.rows_used == 3
    assert rows[0]["question"] == SVAMP[0]["Body"] + " " + SVAMP[0]["Question"]


@pytest.mark.parametrize(
    "gold_format, golds", [("number", ["9", "15", "16"]), ("auto", ["9 (apples)", "15 (balls)", "16 (oranges)"])]
)
def test_asdiv_golds_with_units_in_parentheses(tmp_path, gold_format, golds):
    from grpo_tui.engine.rewards import is_correct

    f = jsonl(tmp_path / "asdiv.jsonl", ASDIV)
    rows, _ = load_rows(
        DataConfig(
            source="file",
            data_files=[str(f)],
            question_template="{body} {question}",
            gold_format=gold_format,
            shuffle=False,
        ),
        seed=0,
    )
    assert [r["answer"] for r in rows] == golds
    assert all(is_correct(n, r["answer"]) for n, r in zip(["9", "15", "16"], rows))  # judged as numbers either way


def test_csv_parquet_and_hyphenated_fields(tmp_path):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    f = tmp_path / "zh.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["question_zh-cn", "answer_only"])
        w.writeheader()
        w.writerow({"question_zh-cn": "哈利有50本书，妹妹有两倍，表弟有一半。共有多少本书？", "answer_only": "175"})
    p = tmp_path / "zh.parquet"
    pq.write_table(pa.table({"question_zh-cn": ["一加一等于几？"], "answer_only": ["2"]}), p)
    rows, report = load_rows(
        DataConfig(
            source="hub",
            dataset="swulling/gsm8k_chinese",
            data_files=[str(f), str(p)],
            question_field="question_zh-cn",
            answer_field="answer_only",
            gold_format="number",
            shuffle=False,
        ),
        seed=0,
    )
    assert [r["answer"] for r in rows] == ["175", "2"] and rows[0]["question"].startswith("哈利")
    assert report.source == "hub"


def test_chat_rows_are_the_prompt_and_extra_columns_ride_along(tmp_path):
    recs = [
        {
            "messages": [{"role": "user", "content": "What is 2+3?"}, {"role": "assistant", "content": "5"}],
            "answer": "5",
            "level": 1,
            "topic": "add",
        },
        {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 4*2?"}],
            "answer": "8",
            "level": 2,
            "topic": "mul",
        },
    ]
    f = jsonl(tmp_path / "chat.jsonl", recs)
    rows, _ = load_rows(
        DataConfig(
            source="file", data_files=[str(f)], question_field="messages", extra_fields=["level"], shuffle=False
        ),
        seed=0,
    )
    assert rows[0] == {
        "question": "What is 2+3?",
        "answer": "5",
        "level": 1,
        "messages": [{"role": "user", "content": "What is 2+3?"}],
    }  # the assistant turn is not prompt
    ds = to_dataset(rows, PromptConfig())
    assert ds[0]["prompt"][0]["role"] == "system" and ds[0]["prompt"][1]["content"] == "What is 2+3?"
    assert ds[1]["prompt"] == recs[1]["messages"]  # it brings its own system prompt
    assert ds.column_names == ["prompt", "question", "answer", "level"] and ds[1]["level"] == 2


def test_undecodable_lines_are_skipped_and_counted(tmp_path):
    f = tmp_path / "mixed.jsonl"
    f.write_bytes(
        b'{"question": "What is 1+1?", "answer": "2"}\n\xff\xfe broken latin-1 \xe9\n'
        b'{"question": "What is 2+2?", "answer": "4"}\n'
    )
    rows, report = load_rows(DataConfig(source="file", data_files=[str(f)], shuffle=False), seed=0)
    assert len(rows) == 2 and report.skipped == {"undecodable": 1} and report.rows_total == 3
    assert "line 2" in report.first_bad["undecodable"]


@pytest.mark.parametrize(
    "content, expect",
    [
        ("", ["no usable rows", "rows read: 0"]),
        (
            json.dumps({"q": "What is 1+1?", "a": "2"}) + "\n",
            ["no field 'question'", "the rows have: a, q", "question_field"],
        ),
        (json.dumps({"question": "What is 1+1?", "solution": "2"}) + "\n", ["'answer' missing", "row 1"]),
    ],
)
def test_bad_files_name_file_row_and_field(tmp_path, content, expect):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(PresetError) as e:
        load_rows(DataConfig(source="file", data_files=[str(f)]), seed=0)
    for piece in expect + [str(f)]:
        assert piece in str(e.value), (piece, str(e.value))


def test_fewer_rows_than_one_batch_is_an_error(tmp_path):
    f = jsonl(tmp_path / "two.jsonl", [{"question": "1+1?", "answer": "2"}, {"question": "2+2?", "answer": "4"}])
    with pytest.raises(PresetError, match="fewer than one generation batch"):
        load_rows(DataConfig(source="file", data_files=[str(f)]), seed=0, min_rows=4)


def test_a_million_character_question_is_skipped_before_tokenizing(tmp_path):
    from transformers import AutoTokenizer

    from grpo_tui.engine.models import ensure_smollm2

    f = jsonl(
        tmp_path / "long.jsonl",
        [
            {"question": "How many? " * 100_000, "answer": "1"},
            {"question": "What is 2+2? " * 40, "answer": "4"},
            {"question": "What is 3+3?", "answer": "6"},
        ],
    )
    t0 = time.time()
    rows, report = load_rows(DataConfig(source="file", data_files=[str(f)], max_prompt_tokens=256, shuffle=False), 0)
    assert time.time() - t0 < 5 and report.skipped == {"prompt_too_long": 1} and len(rows) == 2
    tok = AutoTokenizer.from_pretrained(ensure_smollm2())
    kept = drop_long_prompts(rows, tok, PromptConfig(), 256, report)  # exact count, chat template included
    assert [r["answer"] for r in kept] == ["6"] and report.skipped == {"prompt_too_long": 2}
    assert report.rows_used == 1


def test_hub_path_is_real_and_offline_is_a_clear_error():
    # datasets.load_dataset is what runs (HF_DATASETS_OFFLINE=1 here): the error names the dataset and the way out
    with pytest.raises(PresetError) as e:
        list(hub_records("swulling/gsm8k_chinese", None, "train"))
    assert "swulling/gsm8k_chinese" in str(e.value) and "data_files" in str(e.value)
    with pytest.raises(PresetError, match="needs dataset"):
        from grpo_tui.engine.config import load_config

        load_config("tiny", ['data.source="hub"'])


def test_eval_mapping_and_loud_gold_warning(tmp_path):
    f = jsonl(tmp_path / "svamp.jsonl", SVAMP)
    d = load_eval_data(str(f), fields=FieldMap("auto", "Answer", "{Body} {Question}", "number"))
    assert [i.gold for i in d.items] == ["51", "1", "104"] and d.gold_warning() is None
    words = jsonl(
        tmp_path / "words.jsonl",
        [{"question": f"q{i}", "answer": w} for i, w in enumerate(["apples", "nine", "the red one", "7"])],
    )
    w = load_eval_data(str(words))
    assert w.unparsed == 3 and "WARNING: 3 of 4 gold answers" in w.gold_warning()


@pytest.mark.parametrize(
    "shape, flags, golds",
    [
        (
            "svamp",
            ["--question-template", "{Body} {Question}", "--answer-field", "Answer", "--gold-format", "number"],
            ["51", "1", "104"],
        ),
        (
            "asdiv",
            ["--question-template", "{body} {question}", "--answer-field", "answer", "--gold-format", "number"],
            ["9", "15", "16"],
        ),
    ],
)
def test_eval_cli_reads_svamp_and_asdiv_shapes(tmp_path, shape, flags, golds):
    f = jsonl(tmp_path / f"{shape}.jsonl", SVAMP if shape == "svamp" else ASDIV)
    out = tmp_path / "out"
    proc = run_grpo_tui(
        [
            "eval",
            "--model",
            "tiny-random",
            "--dataset",
            str(f),
            *flags,
            "--max-new-tokens",
            "4",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "3 items" in proc.stdout and "WARNING" not in proc.stdout
    results = [json.loads(line) for line in next(out.rglob("results.jsonl")).read_text().splitlines()]
    assert [r["gold"] for r in results] == golds
    assert results[0]["question"].startswith(
        (SVAMP if shape == "svamp" else ASDIV)[0]["Body" if shape == "svamp" else "body"]
    )


def test_eval_cli_warns_when_golds_do_not_parse(tmp_path):
    f = jsonl(tmp_path / "asdiv.jsonl", ASDIV)
    proc = run_grpo_tui(
        [
            "eval",
            "--model",
            "tiny-random",
            "--dataset",
            str(f),
            "--question-template",
            "{body} {question}",
            "--answer-field",
            "formula",
            "--gold-format",
            "plain",
            "--max-new-tokens",
            "2",
            "--threads",
            "1",
            "--out",
            str(tmp_path / "o"),
        ],
        timeout=600,
    )
    assert proc.returncode == 0 and "WARNING: 3 of 3 gold answers" in proc.stdout, proc.stdout[-2000:]


# ------------------------------------------------------------------ the engine, end to end


def test_bad_data_exits_2_before_the_run_dir(tmp_path):
    few = jsonl(tmp_path / "few.jsonl", [{"question": "1+1?", "answer": "2"}])
    wrong = jsonl(tmp_path / "wrong.jsonl", [{"q": "1+1?", "a": "2"}] * 10)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for f, expect in (
        (few, "fewer than one generation batch"),
        (wrong, "no field 'question'"),
        (empty, "no usable rows"),
    ):
        run_dir = tmp_path / f"run-{f.stem}"
        proc = run_engine(
            [
                "--preset",
                "tiny",
                "--run-dir",
                str(run_dir),
                "--set",
                'data.source="file"',
                "--set",
                f'data.data_files=["{f}"]',
            ],
            timeout=300,
        )
        assert proc.returncode == 2 and expect in proc.stderr and str(f) in proc.stderr, proc.stderr[-2000:]
        assert not run_dir.exists()


def test_training_on_a_file_with_bad_rows_and_extra_columns(tmp_path):
    """Undecodable and huge rows are skipped and counted; an extra column reaches a user reward as a kwarg."""
    good = [
        {"question": f"Sam has {i} apples and buys 2 more. How many now?", "answer": str(i + 2), "level": i % 3}
        for i in range(12)
    ]
    f = tmp_path / "train.jsonl"
    f.write_bytes(
        b"".join(json.dumps(r).encode() + b"\n" for r in good)
        + b"\xff\xfe not utf-8\n"
        + json.dumps({"question": "How many? " * 100_000, "answer": "1", "level": 0}).encode()
        + b"\n"
    )
    rewards = tmp_path / "level_reward.py"
    rewards.write_text(
        "def level(prompts, completions, answer, level, **kwargs):\n    return [float(x) for x in level]\n"
    )
    preset = write_preset(
        tmp_path / "p.toml",
        f"""
extends = "tiny"
[data]
source = "file"
data_files = ["{f}"]
extra_fields = ["level"]
max_prompt_tokens = 512
[rewards]
correctness = 1.0
"{rewards}:level" = 1.0
""",
    )
    run_dir = tmp_path / "run"
    t0 = time.time()
    proc = run_engine(
        [
            "--preset",
            str(preset),
            "--run-dir",
            str(run_dir),
            "--max-steps",
            "1",
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    ds = next(e for e in events if e["type"] == "dataset")
    assert ds["rows_used"] == 12 and ds["skipped"] == {"undecodable": 1, "prompt_too_long": 1}
    groups = [json.loads(line) for line in (run_dir / "rollouts.jsonl").read_text().splitlines()]
    by_q = {r["question"]: r["level"] for r in good}
    for g in groups:
        for c in g["completions"]:
            assert c["rewards"]["level"] == by_q[g["prompt"]]
    assert time.time() - t0 < 500


def test_balance_by_keeps_the_rounds_order_through_trl(tmp_path):
    """TRL's sampler reshuffles a dataset by default; with balance_by it is told not to, so the steps take the
    loader's rounds in order: the first two steps (2 prompts each) hold one problem of each operation."""
    from grpo_tui.engine.config import load_config
    from grpo_tui.engine.data.loader import load_rows
    from grpo_tui.rundir.layout import RunDir

    sets = ['data.balance_by="operation"']
    run_dir = tmp_path / "run"
    proc = run_engine(
        [
            "--preset",
            "tiny",
            "--run-dir",
            str(run_dir),
            "--max-steps",
            "2",
            *[a for s in sets for a in ("--set", s)],
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = load_config("tiny", sets)
    rows, _ = load_rows(cfg.data, cfg.train.seed)
    groups = [json.loads(line) for line in RunDir(run_dir).rollouts.read_text().splitlines()]
    assert [g["prompt"] for g in sorted(groups, key=lambda g: (g["step"], g["group"]))] == [
        r["question"] for r in rows[:4]
    ]
