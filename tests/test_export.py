"""`grpo-tui export`: a run's checkpoint out as a model that loads with transformers and answers a prompt."""

from __future__ import annotations

import json

import pytest
from support.processes import run_engine, run_grpo_tui

from grpo_tui.tui.console.export import main as export_main


def _generate(model_dir, prompt="Sam has 4 apples and buys 3 more. How many apples?"):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=5, do_sample=False)
    return model, tok, out[0, ids["input_ids"].shape[1] :]


def test_export_full_weights_loads_and_answers(tiny_run, tmp_path):
    run_dir, proc, _ = tiny_run
    assert proc.returncode == 0
    out = tmp_path / "model"
    cli = run_grpo_tui(["export", f"{run_dir}@3", "--out", str(out)], timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer_config.json", "README.md"} <= names
    model, tok, new = _generate(out)
    assert len(new) == 5  # it answers (random weights: the words are noise)
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["max_new_tokens"] == 24  # the tiny preset's max_completion_length
    card = (out / "README.md").read_text()
    assert "step 3" in card and "tiny-test" in card and "Mean total reward" in card and "| correctness |" in card
    # the exported weights are the checkpoint's, bit for bit
    import torch
    from transformers import AutoModelForCausalLM

    ck = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoints" / "checkpoint-3")
    assert all(torch.equal(a, b) for a, b in zip(ck.state_dict().values(), model.state_dict().values()))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")]  # no temporary directory left


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, test_preset):
    # the test preset's distinct_chars reward varies within a group, so advantages (and the update) are non-zero
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    proc = run_engine(
        [
            "--preset",
            str(test_preset),
            "--run-dir",
            str(run_dir),
            "--max-steps",
            "1",
            "--set",
            "model.lora=true",
            "--set",
            "train.learning_rate=0.05",
            "--set",
            "train.warmup_ratio=0.0",
            "--set",
            'train.lr_scheduler_type="constant"',
        ],
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_export_lora_merged_and_as_adapter(lora_run, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ck = lora_run / "checkpoints" / "checkpoint-1"
    assert (ck / "adapter_config.json").is_file()
    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert export_main([str(lora_run), "--out", str(merged)]) == 0
    assert export_main([str(lora_run), "--out", str(adapter), "--adapter"]) == 0
    assert (merged / "model.safetensors").is_file() and not (merged / "adapter_config.json").exists()
    assert (adapter / "adapter_model.safetensors").is_file() and not (adapter / "model.safetensors").exists()
    model, tok, new = _generate(merged)
    assert len(new) == 5
    # merged weights compute what base + adapter computes
    base_dir = json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapter)
    x = torch.tensor([[1, 5, 9, 14, 20]])
    with torch.no_grad():
        assert torch.allclose(model(x).logits, peft_model(x).logits, atol=1e-4)
        base_logits = AutoModelForCausalLM.from_pretrained(base_dir)(x).logits
    assert not torch.allclose(model(x).logits, base_logits, atol=1e-4)  # the adapter did change something
    assert "LoRA adapter merged" in (merged / "README.md").read_text()
    assert "library_name: peft" in (adapter / "README.md").read_text()


def test_export_errors_exit_2_and_write_nothing(tiny_run, tmp_path, capsys):
    run_dir, _, _ = tiny_run
    empty_run = tmp_path / "norun"
    empty_run.mkdir()
    (empty_run / "config.json").write_text((run_dir / "config.json").read_text())
    (empty_run / "events.jsonl").write_text("")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    cases = [
        ([f"{run_dir}@99", "--out", str(tmp_path / "a")], "no checkpoint-99"),
        ([f"{run_dir}@abc", "--out", str(tmp_path / "b")], "step number"),
        ([str(empty_run), "--out", str(tmp_path / "c")], "no checkpoint"),
        ([str(tmp_path / "missing"), "--out", str(tmp_path / "d")], "no such directory"),
        ([str(run_dir), "--out", str(full)], "not an empty directory"),
        ([str(run_dir), "--out", str(tmp_path / "e"), "--adapter"], "not a LoRA adapter"),
        ([str(run_dir), "--out", str(tmp_path / "f"), "--push-to-hub", "me/model"], "HF_HUB_OFFLINE"),
    ]
    for argv, expect in cases:
        assert export_main(argv) == 2, argv
        err = capsys.readouterr().err
        assert expect in err, (expect, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "norun"]
    assert [p.name for p in full.iterdir()] == ["x"]
