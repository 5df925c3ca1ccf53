"""--protocol lm-eval-gsm8k: lm-evaluation-harness's gsm8k task (few-shot prompt, strict and flexible filters)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.paths import SHARED_DATA
from support.processes import run_grpo_tui

from grpo_tui.engine.eval import lm_eval_gsm8k as lm

TRAIN = [{"question": f"Train question {i}?", "answer": f"Step {i}.\n#### {i * 7}"} for i in range(40)]
TEST = [
    {"question": "Natalia sold 48 clips. How many?", "answer": "She sold 48 + 24 = 72.\n#### 72"},
    {"question": "How much is 1,000 + 80?", "answer": "1000 + 80 = 1080\n#### 1,080"},
]


def test_fewshot_prompt_shape_and_sampling():
    ctx = lm.contexts(TEST, TRAIN)
    rnd = random.Random(1234)  # lm-eval: one Random(fewshot_seed), rnd.sample(train_docs, 5) per test doc in order
    for doc, text in zip(TEST, ctx):
        shots = rnd.sample(TRAIN, 5)
        expected = "".join(f"Question: {s['question']}\nAnswer: {s['answer']}\n\n" for s in shots)
        assert text == expected + f"Question: {doc['question']}\nAnswer:"
    assert ctx[0] != ctx[1]  # a fresh draw per item


@pytest.mark.parametrize(
    "completion, strict, flexible, strict_ok, flex_ok",
    [
        (" She sold 72 clips.\n#### 72", "72", "72", True, True),
        (" 48 + 24 = 72 clips", "[invalid]", "72", False, True),
        (" The answer is $72.", "[invalid]", "$72.", False, True),  # "$" and the final "." are ignored
        (" #### 72.00", "72.00", "72.00", False, False),  # exact match: 72.00 is not 72
        (" #### 1,080", "1,080", "1,080", False, False),  # against 72: wrong either way
        (" so 70 then 72\n#### 7", "7", "7", False, False),  # flexible: the last number, 7
        (" 70, then 72 apples", "[invalid]", "72", False, True),
        ("", "[invalid]", "[invalid]", False, False),
    ],
)
def test_filters_and_exact_match(completion, strict, flexible, strict_ok, flex_ok):
    got = lm.score(completion, TEST[0])
    assert (got["extracted_strict"], got["extracted_flex"]) == (strict, flexible)
    assert (got["correct"], got["correct_flex"]) == (strict_ok, flex_ok)
    assert lm.exact_match("1,080", TEST[1]["answer"])  # commas removed on both sides


def test_cut_at_stop_sequences():
    assert lm.cut_at_stop(" 72\n#### 72\n\nQuestion: next one") == " 72\n#### 72\n\n"
    assert lm.cut_at_stop(" 5<|im_end|>junk") == " 5"


# ------------------------------------------------------------- parity with lm-eval's own code


def _lm_eval_source() -> Path | None:
    """lm_eval's package directory: LM_EVAL_SRC (an unpacked wheel: `pip download lm_eval --no-deps`), or installed."""
    env = os.environ.get("LM_EVAL_SRC")
    if env and (Path(env) / "lm_eval").is_dir():
        return Path(env) / "lm_eval"
    spec = importlib.util.find_spec("lm_eval")
    return Path(spec.origin).parent if spec and spec.origin else None


def _lm_eval_functions(src: Path):
    """lm-eval's RegexFilter and exact_match_hf_evaluate, taken from its source files and run as written (its
    package imports sacrebleu, sklearn, aiohttp...: too heavy to install for two pure functions)."""
    import string

    import numpy as np

    ns = {"re": re, "np": np, "string": string, "Filter": object, "register_filter": lambda name: lambda c: c}
    for file, name in (("filters/extraction.py", "RegexFilter"), ("api/metrics.py", "exact_match_hf_evaluate")):
        tree = ast.parse((src / file).read_text())
        node = next(n for n in tree.body if getattr(n, "name", None) == name)
        node.decorator_list = []
        exec(compile(ast.Module([node], []), str(src / file), "exec"), ns)
    import yaml

    task = yaml.safe_load((src / "tasks" / "gsm8k" / "gsm8k.yaml").read_text())
    return ns["RegexFilter"], ns["exact_match_hf_evaluate"], task


def _lm_eval_verdicts(completions, docs):
    src = _lm_eval_source()
    if src is None:
        pytest.skip("lm_eval not found: set LM_EVAL_SRC to an unpacked `pip download lm_eval --no-deps` wheel")
    RegexFilter, exact_match_hf_evaluate, task = _lm_eval_functions(src)
    metric = task["metric_list"][0]
    out = {}
    for f in task["filter_list"]:
        spec = f["filter"][0]
        flt = RegexFilter(regex_pattern=spec["regex_pattern"], group_select=spec.get("group_select", 0))
        picked = [r[0] for r in flt.apply([[c] for c in completions], docs)]  # then take_first
        out[f["name"]] = (
            picked,
            [
                bool(
                    exact_match_hf_evaluate(
                        [p],
                        [d["answer"]],
                        regexes_to_ignore=metric["regexes_to_ignore"],
                        ignore_case=metric["ignore_case"],
                        ignore_punctuation=metric["ignore_punctuation"],
                    )["exact_match"]
                )
                for p, d in zip(picked, docs)
            ],
        )
    # our constants are the yaml's
    assert (task["num_fewshot"], task["generation_kwargs"]["until"]) == (lm.NUM_FEWSHOT, list(lm.UNTIL))
    assert tuple(metric["regexes_to_ignore"]) == lm.REGEXES_TO_IGNORE
    assert [f["filter"][0]["regex_pattern"] for f in task["filter_list"]] == [lm.STRICT_PATTERN, lm.FLEXIBLE_PATTERN]
    assert task["doc_to_text"] == "Question: {{question}}\nAnswer:"
    return out


def _assert_parity(completions, docs):
    theirs = _lm_eval_verdicts(completions, docs)
    ours = [lm.score(c, d) for c, d in zip(completions, docs)]
    assert [o["extracted_strict"] for o in ours] == theirs["strict-match"][0]
    assert [o["correct"] for o in ours] == theirs["strict-match"][1]
    assert [o["extracted_flex"] for o in ours] == theirs["flexible-extract"][0]
    assert [o["correct_flex"] for o in ours] == theirs["flexible-extract"][1]


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789.,$#- abcQ:\n", max_size=40),
            st.builds(
                lambda a, b: f"so {a} ... #### {b}",
                st.integers(-999, 99999),
                st.sampled_from(["72", "72.", "72.0", "1,080", "$72", "-3", "7 2"]),
            ),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_verdicts_match_lm_evals_own_filters_on_generated_completions(completions):
    docs = [TEST[i % 2] for i in range(len(completions))]
    _assert_parity(completions, docs)


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "gsm8k" / "test.jsonl").exists(), reason="needs ../shared/data")
def test_cli_protocol_on_a_real_model_matches_lm_eval_verdicts(tmp_path):
    """SmolLM2-135M-Instruct, 8 GSM8K test items, the CLI's completions re-scored by lm-eval's code."""
    out = tmp_path / "out"
    proc = run_grpo_tui(
        [
            "eval",
            "--model",
            "smollm2-135m-instruct",
            "--dataset",
            "gsm8k",
            "--protocol",
            "lm-eval-gsm8k",
            "--limit",
            "8",
            "--max-new-tokens",
            "128",
            "--threads",
            "2",
            "--out",
            str(out),
        ],
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "|gsm8k|" in proc.stdout and "strict-match" in proc.stdout and "flexible-extract" in proc.stdout
    rows = [json.loads(x) for x in next(out.rglob("results.jsonl")).read_text().splitlines()]
    assert len(rows) == 8
    docs = [{"question": r["question"], "answer": r["gold"]} for r in rows]
    _assert_parity([r["completion"] for r in rows], docs)
    summary = json.loads(next(out.rglob("summary.json")).read_text())
    assert summary["strict-match"]["correct"] == sum(r["correct"] for r in rows)


def test_cli_protocol_gives_a_model_named_twice_a_folder_each(tmp_path):
    test = SHARED_DATA / "gsm8k" / "test.jsonl"
    out = tmp_path / "out"
    args = ["eval", "--model", "tiny-random", "--compare", "tiny-random", "--dataset", str(test)]
    args += ["--fewshot-file", str(test), "--protocol", "lm-eval-gsm8k", "--limit", "2", "--max-new-tokens", "4"]
    proc = run_grpo_tui([*args, "--out", str(out)], timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert sorted(p.parent.name for p in out.rglob("summary.json")) == ["tiny-random", "tiny-random-2"]
