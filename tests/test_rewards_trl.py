"""Rewards called as TRL calls them: keywords, conversational completions, `solution`, None as n/a, module paths,
reward models, and a reward that fails on every completion stopping the run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from grpo_tui.engine.rewards import BrokenRewardError, RewardSpecError, resolve_reward
from grpo_tui.engine.rewards.isolated import ProcessReward
from grpo_tui.engine.rewards.spec import label
from grpo_tui.engine.rewards.trl_call import TrlReward

QUESTION = [{"role": "system", "content": "Answer in tags."}, {"role": "user", "content": "What is 3 + 4?"}]


def said(*texts: str) -> list[list[dict[str, str]]]:
    """Completions as TRL hands them for a conversational dataset."""
    return [[{"role": "assistant", "content": t}] for t in texts]


def trl_call(reward: TrlReward, texts: list[str], **columns) -> list[float]:
    """The call GRPOTrainer._calculate_rewards makes, with TRL's per-batch extras."""
    from transformers import TrainerState

    n = len(texts)
    logged: dict = {}
    out = reward(
        prompts=[QUESTION] * n,
        completions=said(*texts),
        completion_ids=[[1, 2]] * n,
        question=["What is 3 + 4?"] * n,
        answer=["7"] * n,
        **columns,
        trainer_state=TrainerState(global_step=3, max_steps=9),
        log_extra=lambda column, values: logged.setdefault("extra", []).append((column, values)),
        log_metric=lambda name, value: logged.setdefault("metric", []).append((name, value)),
    )
    reward.logged = logged
    return out


def user_reward(tmp_path: Path, body: str, func: str = "f") -> TrlReward:
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent(body))
    return TrlReward(func, resolve_reward(f"{path}:{func}"), "reasoning")


def test_a_user_function_gets_exactly_trls_keywords(tmp_path):
    r = user_reward(
        tmp_path,
        """
        def f(*, prompts, completions, completion_ids, trainer_state, answer, solution, question, log_extra,
              log_metric, **kwargs):
            assert not kwargs, kwargs  # nothing of ours besides TRL's call and the gold's second name
            assert prompts[0][-1] == {"role": "user", "content": "What is 3 + 4?"}, prompts
            assert completions[1] == [{"role": "assistant", "content": "8"}], completions
            assert completion_ids == [[1, 2], [1, 2]] and solution == answer == ["7", "7"]
            assert question[0] == "What is 3 + 4?" and trainer_state.global_step == 3
            log_extra("seen", [c[0]["content"] for c in completions])
            log_metric("calls", 1.0)
            return [float(c[0]["content"] == s) for c, s in zip(completions, solution)]
        """,
    )
    try:
        assert trl_call(r, ["7", "8"]) == [1.0, 0.0]
        assert r.guarded.drain_failures() == []
        # log_extra / log_metric made in the worker reach the trainer's own callbacks
        assert r.logged == {"extra": [("seen", ["7", "8"])], "metric": [("calls", 1.0)]}
    finally:
        r.close()


def test_a_dataset_solution_column_is_kept():
    seen = []
    r = TrlReward("s", lambda solution, **kw: seen.append(solution) or [0.0] * len(solution), "reasoning")
    trl_call(r, ["a"], solution=["\\boxed{7}"])
    assert seen == [["\\boxed{7}"]]


def test_builtins_get_text_at_the_one_boundary():
    r = TrlReward("correctness", resolve_reward("correctness"), "reasoning")
    assert trl_call(r, ["<answer>7</answer>", "<answer>8</answer>", "7"]) == [2.0, 0.0, 0.0]
    assert r.guarded.drain_failures() == []


def test_none_is_not_applicable(tmp_path):
    r = user_reward(
        tmp_path,
        """
        def f(completions, **kwargs):
            return [None if c[0]["content"] == "skip" else 1.0 for c in completions]
        """,
    )
    try:
        out = trl_call(r, ["skip", "x", "skip"])
        assert math.isnan(out[0]) and out[1] == 1.0 and math.isnan(out[2])
        assert r.guarded.drain_failures() == []  # not a failure, and not a broken reward either
        out = trl_call(r, ["skip", "skip"])
        assert all(math.isnan(v) for v in out)
    finally:
        r.close()


def test_an_async_reward_is_awaited(tmp_path):
    r = user_reward(
        tmp_path,
        """
        import asyncio

        async def f(completions, **kwargs):
            await asyncio.sleep(0)
            return [float(len(c[0]["content"])) for c in completions]
        """,
    )
    try:
        assert trl_call(r, ["ab", "abc"]) == [2.0, 3.0]
    finally:
        r.close()


def test_trls_own_rewards_by_module_path_run_in_a_worker():
    fmt = TrlReward("think_format_reward", resolve_reward("trl.rewards:think_format_reward"), "think")
    acc = TrlReward("accuracy_reward", resolve_reward("trl.rewards:accuracy_reward"), "think")
    try:
        assert isinstance(fmt.guarded.fn, ProcessReward) and fmt.guarded.fn.kind == "module"
        assert fmt.guarded.fn.pid not in (None, os.getpid())
        assert trl_call(fmt, ["<think>\nhm\n</think>\n7", "no tags"]) == [1.0, 0.0]
        # accuracy_reward reads the gold from `solution`, which the engine fills from `answer`
        assert trl_call(acc, ["so \\boxed{7}", "so \\boxed{8}"]) == [1.0, 0.0]
        assert fmt.guarded.drain_failures() == [] and acc.guarded.drain_failures() == []
    finally:
        fmt.close()
        acc.close()


def test_module_spec_errors_and_ownership(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "myrewards"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "score.py").write_text(
        "def ok(completions, **kwargs):\n    return [1.0] * len(completions)\ndef strict(completions):\n    return []\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))  # the worker's import path
    fn = resolve_reward("myrewards.score:ok")
    try:
        assert fn(prompts=[QUESTION], completions=said("x")) == [1.0]
    finally:
        fn.close()
    cases = {
        "myrewards.nothere:ok": "no module named 'myrewards.nothere'",
        "myrewards.score:okk": "did you mean 'ok'",
        "myrewards.score:strict": "must accept **kwargs",
        "nosuchpackage_xyz:f": "no module named 'nosuchpackage_xyz'",
    }
    for spec, needle in cases.items():
        with pytest.raises(RewardSpecError) as e:
            resolve_reward(spec)
        assert needle in str(e.value) and spec in str(e.value), str(e.value)
    (pkg / "score.py").chmod(0o666)  # code anybody can change would run as you: refused, as for reward files
    with pytest.raises(RewardSpecError, match="can be written by other users"):
        resolve_reward("myrewards.score:ok")


def test_labels_and_a_bare_trl_name():
    assert label("trl.rewards:think_format_reward") == "think_format_reward"
    assert label("model:/tmp/rm/tiny-rm/") == "tiny-rm" and label("model:org/reward-1b") == "reward-1b"
    with pytest.raises(RewardSpecError, match="did you mean 'trl.rewards:accuracy_reward'"):
        resolve_reward("accuracy_reward")


# ------------------------------------------------------------------------------------------ fail fast


def test_a_reward_failing_on_every_completion_stops_with_its_name_error_and_a_completion(tmp_path):
    r = user_reward(
        tmp_path,
        """
        def f(completions, **kwargs):
            return [1 / 0 for c in completions]
        """,
    )
    try:
        with pytest.raises(BrokenRewardError) as e:
            trl_call(r, ["first completion", "second"])
        message = str(e.value)
        assert "'f'" in message and "(2 of 2)" in message and "ZeroDivisionError" in message
        assert "mine.py:3" in message and "first completion" in message and len(message) < 480
    finally:
        r.close()


def test_a_reward_failing_sometimes_scores_zero_and_goes_on(tmp_path):
    r = user_reward(
        tmp_path,
        """
        def f(completions, **kwargs):
            return [1.0 / (c[0]["content"] != "bad") for c in completions]
        """,
    )
    try:
        assert trl_call(r, ["ok", "bad"]) == [1.0, 0.0]
        (failure,) = r.guarded.drain_failures()
        assert failure["kinds"] == {"exception": 1}
    finally:
        r.close()


# ------------------------------------------------------------------------------------------ reward models


@pytest.fixture(scope="module")
def tiny_reward_model(tmp_path_factory) -> Path:
    """A random-weight sequence-classification model (num_labels=1) with the small chat tokenizer, saved."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from grpo_tui.engine.small_tokenizer import build_small_tokenizer

    tokenizer = build_small_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=1,
        pad_token_id=0,
    )
    path = tmp_path_factory.mktemp("rm") / "tiny-rm"
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_a_reward_model_scores_as_trl_does(tiny_reward_model):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    r = TrlReward(label(f"model:{tiny_reward_model}"), resolve_reward(f"model:{tiny_reward_model}"), "reasoning")
    texts = ["7", "the answer is 8, after a much longer chain of thought"]
    scores = trl_call(r, texts)
    assert r.__name__ == "tiny-rm" and r.guarded.drain_failures() == []
    # one at a time, no padding: TRL's recipe (chat template over prompt + completion, logits[:, 0])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_reward_model, num_labels=1).eval()
    tok = AutoTokenizer.from_pretrained(tiny_reward_model)
    for text, got in zip(texts, scores):
        rendered = tok.apply_chat_template(QUESTION + said(text)[0], tokenize=False)
        with torch.inference_mode():
            want = model(**tok(rendered, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()
        assert got == pytest.approx(want, abs=1e-4)
    assert scores[0] != pytest.approx(scores[1])


def test_a_reward_model_path_is_checked_before_anything_loads(tmp_path):
    with pytest.raises(RewardSpecError, match="no such directory"):
        resolve_reward(f"model:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RewardSpecError, match="has no config.json"):
        resolve_reward("model:empty", base_dir=tmp_path)
    assert resolve_reward("model:org/some-reward-model").source == "org/some-reward-model"  # a hub id: at load


# ------------------------------------------------------------------------------------------ whole runs


def _grpo_tui(cwd: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The installed console script, from a directory that holds an engine.py that raises."""
    (cwd / "engine.py").write_text("raise SystemExit('the user engine.py ran instead of grpo-tui')\n")
    exe = Path(sys.executable).with_name("grpo-tui")
    return subprocess.run(
        [str(exe), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _preset(tmp_path: Path, rewards: str, steps: int) -> Path:
    preset = tmp_path / "p.toml"
    preset.write_text(f'extends = "tiny"\n[train]\nmax_steps = {steps}\nsave_final = false\n[rewards]\n{rewards}')
    return preset


def test_trl_style_rewards_train_with_no_failures(tmp_path):
    """think_format_reward by module path and a file reward reading c[0]["content"]: no reward_failure."""
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "f.py").write_text(
        'def f(completions, **kwargs):\n    return [float(len(c[0]["content"]) > 0) for c in completions]\n'
    )
    preset = _preset(tmp_path, f'"trl.rewards:think_format_reward" = 1.0\n"{tmp_path / "f.py"}:f" = 1.0\n', 3)
    proc = _grpo_tui(work, "--no-ui", "--preset", str(preset), "--max-steps", "3", "--run-dir", str(work / "run"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    events = _events(work / "run")
    assert [e for e in events if e["type"] == "reward_failure"] == []
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "finished"
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 3
    # the file reward saw every completion's text (random completions are never empty)
    assert all(s["metrics"]["rewards/f/mean"] == 1.0 for s in steps)


def test_a_reward_that_always_raises_stops_the_run_in_its_first_step(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "bad.py").write_text("def bad(completions, **kwargs):\n    raise KeyError('gold')\n")
    preset = _preset(tmp_path, f'correctness = 1.0\n"{tmp_path / "bad.py"}:bad" = 1.0\n', 5)
    proc = _grpo_tui(work, "--no-ui", "--preset", str(preset), "--run-dir", str(work / "run"))
    assert proc.returncode not in (0, 2), proc.stdout[-2000:] + proc.stderr[-3000:]
    events = _events(work / "run")
    assert not [e for e in events if e["type"] == "step"]  # stopped before training on it
    (error,) = [e for e in events if e["type"] == "error"]
    for needle in ("BrokenRewardError", "'bad'", "KeyError: 'gold'", "bad.py:2", "completion: "):
        assert needle in error["message"], error["message"]
    assert [e["state"] for e in events if e["type"] == "state"][-1] == "failed"
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "failed"
    assert "KeyError: 'gold'" in proc.stdout + proc.stderr  # the headless printer shows the message


def test_the_log_history_reaches_a_worker_whole_while_each_call_sends_only_new_records(tmp_path):
    import json
    import os
    import signal

    from transformers import TrainerState

    path = tmp_path / "hist.py"
    path.write_text(
        "def f(completions, trainer_state, **kw):\n"
        '    return [float(sum(r["loss"] for r in trainer_state.log_history))] * len(completions)\n'
    )
    fn = resolve_reward(f"{path}:f")
    sizes: list[int] = []
    request = fn._worker.request

    def measured(msg: bytes, timeout_s):
        sizes.append(len(json.loads(msg)["kwargs"]["trainer_state"]["log_history"]))
        return request(msg, timeout_s)

    fn._worker.request = measured
    try:
        state = TrainerState(global_step=0)
        for step in range(1, 6):
            state.log_history.append({"loss": float(step), "step": step})
            assert fn(prompts=["q"], completions=said("a"), trainer_state=state) == [float(sum(range(1, step + 1)))]
        assert sizes == [1, 1, 1, 1, 1]  # each call carries the one new record
        os.kill(fn.pid, signal.SIGKILL)  # a fresh worker process asks for the whole history, and gets it
        os.waitpid(fn.pid, 0)
        state.log_history.append({"loss": 6.0, "step": 6})
        assert fn(prompts=["q"], completions=said("a"), trainer_state=state) == [21.0]
        assert sizes[5:] == [1, 6]
    finally:
        fn.close()
