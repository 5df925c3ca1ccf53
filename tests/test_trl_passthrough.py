"""[train]/[sft] take every field of the installed TRL's GRPOConfig/SFTConfig; trackers log beside events.jsonl."""

from __future__ import annotations

import dataclasses
import json

import pytest
from support.processes import run_cli, run_engine, run_grpo_tui

from grpo_tui.engine.config import ENGINE_OWNED, PresetError, describe_all_fields, load_config, load_resolved


def test_trl_fields_pass_through_typed_and_round_trip(tmp_path):
    cfg = load_config(
        "tiny",
        [
            'train.importance_sampling_level="sequence"',
            "train.delta=2",
            "train.min_p=0.05",
            "train.generation_kwargs={ no_repeat_ngram_size = 3 }",
            "sft.neftune_noise_alpha=5",
        ],
    )
    assert cfg.train.trl_extra == {
        "importance_sampling_level": "sequence",
        "delta": 2.0,
        "min_p": 0.05,
        "generation_kwargs": {"no_repeat_ngram_size": 3},
    }
    assert isinstance(cfg.train.trl_extra["delta"], float)  # an int where TRL wants a float, as for own fields
    assert cfg.sft.trl_extra == {"neftune_noise_alpha": 5.0}
    flat = cfg.to_dict()
    assert flat["train"]["importance_sampling_level"] == "sequence" and "trl_extra" not in flat["train"]
    (tmp_path / "config.json").write_text(json.dumps(flat))
    back = load_resolved(tmp_path / "config.json")
    assert back.train.trl_extra == cfg.train.trl_extra and back.sft.trl_extra == cfg.sft.trl_extra


def test_grpo_args_carry_project_and_trl_fields(tmp_path):
    from grpo_tui.engine.train.grpo_args import grpo_args
    from grpo_tui.engine.train.sft import sft_args

    cfg = load_config(
        "tiny",
        [
            'train.importance_sampling_level="sequence"',
            "train.top_entropy_quantile=0.2",
            "train.max_completion_length=24",
            "train.top_k=5",
            "sft.neftune_noise_alpha=5",
        ],
    )
    args = grpo_args(cfg, tmp_path / "run" / "checkpoints", "cpu")
    assert args.importance_sampling_level == "sequence" and args.top_entropy_quantile == 0.2
    assert args.max_completion_length == 24 and args.top_k == 5 and args.num_generations == cfg.train.num_generations
    assert args.report_to == []  # "none" by default: events.jsonl only
    assert args.run_name == "run"  # the run directory's name by default
    assert args.shuffle_dataset  # TRL's default, unless the loader orders the rows (balance_by)
    assert not grpo_args(load_config("tiny", ['data.balance_by="operation"']), tmp_path, "cpu").shuffle_dataset
    sargs = sft_args(cfg, tmp_path / "run" / "sft" / "checkpoints", "cpu")
    assert sargs.neftune_noise_alpha == 5 and sargs.run_name == "run-sft" and sargs.completion_only_loss


@pytest.mark.parametrize(
    "override, expect",
    [
        (
            'train.importance_samplng_level="sequence"',
            ["unknown key 'importance_samplng_level'", "Did you mean 'importance_sampling_level'", "trl.GRPOConfig"],
        ),
        ('train.delta="big"', ["delta", "expected number or none", "trl.GRPOConfig.delta"]),
        ('train.output_dir="/tmp/x"', ["output_dir is set by the engine", "RUN_DIR/checkpoints"]),
        ("train.reward_weights=[1.0]", ["reward_weights is set by the engine", "[rewards]"]),
        ("sft.num_train_epochs=3", ["num_train_epochs is set by the engine", "use epochs"]),
        ("sft.neftune_noise_alfa=5", ["Did you mean 'neftune_noise_alpha'", "trl.SFTConfig"]),
        ("train.generation_kwargs=3", ["generation_kwargs", "expected table"]),
        (
            'data.balance_by="operation"\ntrain.shuffle_dataset=true'.split("\n"),
            ["balance_by = 'operation'", "shuffle_dataset = true would undo"],
        ),
    ],
)
def test_bad_trl_fields_name_the_fix(override, expect):
    with pytest.raises(PresetError) as e:
        load_config("tiny", override if isinstance(override, list) else [override])
    for piece in expect:
        assert piece in str(e.value), (piece, str(e.value))


def test_plain_preset_load_does_not_import_trl():
    # loading a preset is part of every pre-flight and every UI start: it must not pay for importing trl
    proc = run_cli(
        [
            "-c",
            "import sys; from grpo_tui.engine.config import load_config; load_config('tiny'); "
            "print('trl' in sys.modules)",
        ],
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_misspelled_trl_key_is_refused_without_importing_trl():
    # the field names come from trl's sources (engine/trl_source.py): a typo costs no trl import
    proc = run_cli(
        [
            "-c",
            "import sys; from grpo_tui.engine.config import load_config\n"
            "try: load_config('tiny', ['train.importance_samplng_level=\"sequence\"'])\n"
            "except Exception as e: print(type(e).__name__, 'trl' in sys.modules, 'torch' in sys.modules)",
        ],
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "PresetError False False", proc.stdout + proc.stderr


@pytest.mark.parametrize("cls", ["GRPOConfig", "SFTConfig"])
def test_field_names_read_from_the_sources_match_the_classes(cls):
    import trl

    from grpo_tui.engine.trl_source import config_field_names

    assert config_field_names(cls) == {f.name for f in dataclasses.fields(getattr(trl, cls)) if f.init}


def test_fields_listing_names_the_origin():
    rows = describe_all_fields("train")
    origin = {key: o for key, _t, _d, _h, o in rows}
    assert origin["train.learning_rate"] == "grpo-tui"
    assert origin["train.importance_sampling_level"] == "trl.GRPOConfig"
    assert not any(k.split(".")[1] in ENGINE_OWNED["train"] for k in origin if origin[k] != "grpo-tui")
    from trl import GRPOConfig

    trl_names = {f.name for f in dataclasses.fields(GRPOConfig) if f.init}
    listed = {k.split(".", 1)[1] for k in origin}
    assert trl_names - listed <= set(ENGINE_OWNED["train"])  # every TRL field is settable or explained
    proc = run_grpo_tui(["presets", "--fields", "sft"], timeout=120)
    assert proc.returncode == 0 and "trl.SFTConfig" in proc.stdout and "neftune_noise_alpha" in proc.stdout


def test_typo_of_trl_field_exits_2_before_the_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_engine(
        [
            "--preset",
            "tiny",
            "--run-dir",
            str(run_dir),
            "--set",
            'train.importance_sampling_levl="sequence"',
        ],
        timeout=120,
    )
    assert proc.returncode == 2 and "Did you mean 'importance_sampling_level'" in proc.stderr
    assert not run_dir.exists()


def test_gspo_run_with_tensorboard(tmp_path):
    """GSPO (sequence-level importance sampling) trains, and TRL's logs reach TensorBoard beside events.jsonl."""
    pytest.importorskip("tensorboardX")
    run_dir = tmp_path / "gspo"
    proc = run_engine(
        [
            "--preset",
            "tiny",
            "--run-dir",
            str(run_dir),
            "--max-steps",
            "2",
            "--set",
            'train.importance_sampling_level="sequence"',
            "--set",
            'train.report_to=["tensorboard"]',
            "--set",
            'train.run_name="gspo-test"',
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["type"] == "step"] == [1, 2]
    assert events[0]["config"]["train"]["importance_sampling_level"] == "sequence"
    tb = list((run_dir / "trackers" / "tensorboard").glob("events.out.tfevents.*"))
    assert tb, sorted(p.name for p in run_dir.rglob("*"))
    import struct

    from tensorboardX.proto import event_pb2

    tags = set()
    for f in tb:
        data = f.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            ev = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            tags |= {v.tag for v in ev.summary.value}
            i += 12 + n + 4
    assert any("reward" in t for t in tags), tags


def test_wandb_offline_run(tmp_path, monkeypatch):
    """W&B is optional (not a dependency); where it is installed, an offline run lands in RUN_DIR/trackers."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "wb"
    proc = run_engine(
        [
            "--preset",
            "tiny",
            "--run-dir",
            str(run_dir),
            "--max-steps",
            "1",
            "--set",
            'train.report_to=["wandb"]',
            "--set",
            'train.project="grpo-tui-test"',
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert list((run_dir / "trackers" / "wandb").glob("offline-run-*")), sorted(map(str, run_dir.rglob("*")))
