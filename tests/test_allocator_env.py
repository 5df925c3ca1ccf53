"""The engine's default for torch's CUDA allocator (engine/gpu.py default_allocator_env), on a plain dict as the
environment: the user's setting wins, vLLM's sleep mode never gets expandable segments, a preset switch (the
engine re-executes itself with the environment it had) keeps or takes back only what grpo-tui set."""

from __future__ import annotations

import pytest

from grpo_tui.engine.gpu import ALLOC_SET_BY_US_ENV, EXPANDABLE, default_allocator_env


def test_unset_gets_expandable_segments_once() -> None:
    env: dict[str, str] = {}
    note = default_allocator_env(env, vllm_sleep_mode=False)
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == EXPANDABLE and env[ALLOC_SET_BY_US_ENV] == "1"
    assert note and "set PYTORCH_CUDA_ALLOC_CONF yourself" in note
    # the re-executed engine after a preset switch: already in force, nothing more to say
    assert default_allocator_env(env, vllm_sleep_mode=False) is None
    assert env["PYTORCH_CUDA_ALLOC_CONF"] == EXPANDABLE


@pytest.mark.parametrize("name", ["PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"])
def test_the_users_setting_is_kept(name: str) -> None:
    env = {name: "max_split_size_mb:128"}
    assert default_allocator_env(env, vllm_sleep_mode=False) is None
    assert env == {name: "max_split_size_mb:128"}
    # theirs is kept in sleep mode too
    assert default_allocator_env(env, vllm_sleep_mode=True) is None
    assert env == {name: "max_split_size_mb:128"}


def test_vllm_sleep_mode_never_gets_expandable_segments() -> None:
    env: dict[str, str] = {}
    assert default_allocator_env(env, vllm_sleep_mode=True) is None and env == {}
    # switched from a preset without sleep mode into one with it: our default is taken back, and said so
    default_allocator_env(env, vllm_sleep_mode=False)
    note = default_allocator_env(env, vllm_sleep_mode=True)
    assert env == {} and note and "sleep mode" in note
