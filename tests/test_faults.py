"""Fault injection: what a hostile or unlucky user can do to a run directory, and what the engine does then.

Most cases are refused by the engine's pre-flight (exit 2, before torch loads), so they run the real
`python -m grpo_tui.engine train` in a child process and cost a second or two. Two tests run real training with the
tiny preset: one engine watched by `grpo-tui --no-ui` (second engine refused, SIGTERM, torn event line,
damaged newest checkpoint, resume), and a run on a full disk (a small tmpfs; root only).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from grpo_tui.engine.config import load_config
from grpo_tui.engine.rewards import RewardSpecError, guard, resolve_reward
from grpo_tui.rundir.control import ensure_control_dir, send_command, take_commands
from grpo_tui.rundir.events import EventWriter, read_events
from grpo_tui.rundir.layout import RunDir, RunLock, UnsafeRunDir, find_checkpoints, open_private
from grpo_tui.rundir.rollouts import RolloutWriter

IS_ROOT = os.geteuid() == 0
NOBODY = 65534


def engine(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "grpo_tui.engine", "train", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True)
    os.chmod(path, 0o700)
    return path


def write_config(run: Path, preset: str = "tiny", overrides: list[str] = ()) -> None:
    (run / "config.json").write_text(json.dumps(load_config(preset, list(overrides)).to_dict()))
    os.chmod(run / "config.json", 0o600)


def snapshot(path: Path) -> tuple:
    st = os.stat(path)
    return (path.read_bytes(), st.st_mtime_ns, st.st_size) if path.is_file() else (sorted(os.listdir(path)),)


# ---------------------------------------------------------------- ownership and links


@pytest.mark.parametrize("entry", [".config.json.tmp", "engine.pid", "rollouts.jsonl", "engine.log",
                                   "events.jsonl", "engine.lock", "control"])
def test_a_link_in_the_run_dir_is_refused_and_its_target_untouched(tmp_path, entry):
    target = tmp_path / "victim"
    if entry == "control":
        target.mkdir()
        (target / "precious.json").write_text('{"command": "stop"}')
    else:
        target.write_text("precious\n")
    before = snapshot(target)
    run = private_dir(tmp_path / "run")
    (run / entry).symlink_to(target)
    proc = engine("--preset", "tiny", "--run-dir", str(run))
    assert proc.returncode == 2, proc.stderr
    assert "symbolic link" in proc.stderr and str(run / entry) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert snapshot(target) == before
    assert sorted(os.listdir(run)) == [entry]  # nothing written


def test_writers_never_follow_links(tmp_path):
    # the second line of defence: even past pre-flight (a link planted mid-run), every open refuses links
    target = tmp_path / "victim"
    target.write_text("precious\n")
    run = private_dir(tmp_path / "run")
    for name in ("events.jsonl", "rollouts.jsonl", "engine.pid"):
        (run / name).symlink_to(target)
    with pytest.raises(UnsafeRunDir, match="symbolic link"):
        EventWriter(run / "events.jsonl")
    with pytest.raises(UnsafeRunDir, match="symbolic link"):
        RolloutWriter(run / "rollouts.jsonl")
    with pytest.raises(UnsafeRunDir, match="symbolic link"):
        open_private(run / "engine.pid", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    (run / "control").symlink_to(tmp_path)
    with pytest.raises(UnsafeRunDir, match="symbolic link"):
        ensure_control_dir(run / "control")
    assert target.read_text() == "precious\n"


def test_command_file_that_is_a_link_is_rejected_and_its_target_kept(tmp_path):
    control = tmp_path / "control"
    ensure_control_dir(control)
    assert control.stat().st_mode & 0o777 == 0o700
    secret = tmp_path / "secret.json"
    secret.write_text('{"command": "stop", "id": "x"}')
    (control / "1-evil.json").symlink_to(secret)
    (cmd,) = take_commands(control)
    assert cmd["command"] == "invalid" and "symbolic link" in cmd["args"]["error"]
    assert secret.read_text() == '{"command": "stop", "id": "x"}'  # neither acted on, nor deleted, nor copied
    assert os.listdir(control) == []


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create files owned by another user")
def test_command_file_owned_by_another_user_is_rejected(tmp_path):
    control = tmp_path / "control"
    ensure_control_dir(control)
    send_command(control, "pause")
    (name,) = os.listdir(control)
    os.chown(control / name, NOBODY, NOBODY)
    (cmd,) = take_commands(control)
    assert cmd["command"] == "invalid" and "belongs to" in cmd["args"]["error"]


@pytest.mark.parametrize("what", ["run", "control"])
def test_run_or_control_dir_others_can_write_is_refused(tmp_path, what):
    run = private_dir(tmp_path / "run")
    write_config(run)
    (run / "events.jsonl").write_text("")
    target = run if what == "run" else run / "control"
    target.mkdir(exist_ok=True)
    os.chmod(target, 0o777)
    proc = engine("--run-dir", str(run), "--resume")
    assert proc.returncode == 2 and "can be written by other users" in proc.stderr and str(target) in proc.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create a directory owned by another user")
def test_run_dir_owned_by_another_user_is_refused(tmp_path):
    run = private_dir(tmp_path / "run")
    os.chown(run, NOBODY, NOBODY)
    proc = engine("--preset", "tiny", "--run-dir", str(run))
    assert proc.returncode == 2 and "belongs to" in proc.stderr and str(run) in proc.stderr


def test_new_run_dir_and_files_are_owner_only_and_group_access_is_an_option(tmp_path):
    from grpo_tui.rundir.layout import GROUP_ACCESS_ENV, make_private_dir, write_private
    make_private_dir(tmp_path / "a", "run directory")
    write_private(tmp_path / "a" / "f", "x")
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700 and (tmp_path / "a" / "f").stat().st_mode & 0o777 == 0o600
    os.environ[GROUP_ACCESS_ENV] = "1"
    try:
        make_private_dir(tmp_path / "b", "run directory")
        write_private(tmp_path / "b" / "f", "x")
    finally:
        del os.environ[GROUP_ACCESS_ENV]
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o750 and (tmp_path / "b" / "f").stat().st_mode & 0o777 == 0o640


def _reward_file(tmp_path: Path, body: str = "", name: str = "r.py") -> Path:
    f = tmp_path / name
    f.write_text(body + "\ndef r(prompts, completions, answer, **kwargs):\n    return [1.0] * len(completions)\n")
    return f


def test_resume_with_a_reward_file_others_can_write_is_refused(tmp_path):
    reward = _reward_file(tmp_path)
    run = private_dir(tmp_path / "run")
    (run / "config.json").write_text(json.dumps({**load_config("tiny").to_dict(), "rewards": {f"{reward}:r": 1.0}}))
    ck = private_dir(run / "checkpoints" / "checkpoint-1")
    (ck / "trainer_state.json").write_text('{"global_step": 1}')
    (ck / "config.json").write_text("{}")
    os.chmod(reward, 0o666)
    proc = engine("--run-dir", str(run), "--resume")
    assert proc.returncode == 2 and "can be written by other users" in proc.stderr and str(reward) in proc.stderr
    if IS_ROOT:
        os.chmod(reward, 0o644)
        os.chown(reward, NOBODY, NOBODY)
        with pytest.raises(RewardSpecError, match="belongs to"):
            resolve_reward(f"{reward}:r")


def test_switch_preset_naming_a_preset_others_can_write_is_refused(tmp_path):
    from grpo_tui.engine.run import switch_problem
    preset = tmp_path / "other.toml"
    preset.write_text('extends = "tiny"\n')
    os.chmod(preset, 0o666)
    why = switch_problem(load_config("tiny"), str(preset))
    assert why and "can be written by other users" in why and str(preset) in why
    os.chmod(preset, 0o644)
    assert switch_problem(load_config("tiny"), str(preset)) is None
    if IS_ROOT:
        os.chown(preset, NOBODY, NOBODY)
        assert "belongs to" in switch_problem(load_config("tiny"), str(preset))


# ---------------------------------------------------------------- one writer


def test_second_engine_is_refused_while_the_lock_is_held(tmp_path):
    run = private_dir(tmp_path / "run")
    write_config(run)
    (run / "events.jsonl").write_text("")
    lock = RunLock.acquire(run)
    try:
        assert RunLock.holder(run) == os.getpid()
        for args in (["--resume"], ["--preset", "tiny"]):
            proc = engine("--run-dir", str(run), *args)
            assert proc.returncode == 2 and f"engine pid {os.getpid()}" in proc.stderr, proc.stderr
    finally:
        lock.release()
    assert RunLock.holder(run) is None  # released: the kernel drops a flock with its last descriptor


def test_lock_survives_exec_in_the_same_process(tmp_path):
    # the preset switch and `accelerate launch` re-execute the engine in place: the lock must come along
    run = private_dir(tmp_path / "run")
    script = tmp_path / "relock.py"
    script.write_text(
        "import os, sys, time\n"
        "from rundir.layout import RunLock\n"
        "lock = RunLock.acquire(sys.argv[1])\n"
        "if len(sys.argv) == 2:\n"
        "    lock.keep_across_exec()\n"
        "    os.execv(sys.executable, [sys.executable, __file__, sys.argv[1], 'again'])\n"
        "print(os.getpid(), RunLock.holder(sys.argv[1]), flush=True)\n"
    )
    out = subprocess.run([sys.executable, str(script), str(run)], capture_output=True, text=True, timeout=60,
                         cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr
    pid, holder = out.stdout.split()
    assert pid == holder  # the re-executed image took over its own lock (a fresh open would have been refused)


# ---------------------------------------------------------------- faults in the files


def test_event_writer_ends_a_torn_last_line_so_the_next_event_survives(tmp_path):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.emit("run_start", run_dir=str(path.parent), preset="tiny", pid=1)
    w.close()
    with open(path, "a") as f:
        f.write('{"v": 1, "t": 1.0, "type": "st')  # killed mid-write
    w = EventWriter(path)
    w.emit("run_start", run_dir=str(path.parent), preset="tiny", pid=2)
    w.close()
    events = read_events(path)
    assert [e.get("pid") for e in events if e["type"] == "run_start"] == [1, 2]


def test_event_writer_on_a_full_disk_leaves_no_half_event_and_closes_quietly(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    w.emit("run_start", run_dir=str(path.parent), preset="tiny", pid=1)
    real_write = os.write

    def short_then_full(fd, data):  # the kernel takes a few bytes, then the disk is full
        if fd == w._f.fileno():
            if len(data) > 10:
                return real_write(fd, data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OSError):
        w.emit("error", message="x" * 20000, traceback="y" * 20000)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    w.close()  # never raises
    data = path.read_bytes()
    assert data.endswith(b"\n") and [e["type"] for e in read_events(path)] == ["run_start"]


def test_describe_failure_names_the_checkpoint_and_frees_it(tmp_path):
    from grpo_tui.engine.run import describe_failure
    run = RunDir(private_dir(tmp_path / "run"))
    good = private_dir(run.checkpoints / "checkpoint-10")
    (good / "trainer_state.json").write_text('{"global_step": 10}')
    (good / "config.json").write_text("{}")
    partial = private_dir(run.checkpoints / "checkpoint-12")
    (partial / "model.safetensors").write_bytes(b"\0" * 100)
    try:
        raise RuntimeError("[enforce fail] basic_ios::clear") from OSError(errno.ENOSPC, "No space left on device")
    except RuntimeError as e:
        msg = describe_failure(e, run)
    assert msg.startswith("no space left on device while writing checkpoint-12")
    assert not partial.exists() and good.exists()


def test_damaged_newest_checkpoint_is_skipped_by_the_one_lookup(tmp_path):
    from grpo_tui.engine.eval.evaluate import _checkpoints
    from grpo_tui.engine.train.sft import _latest_sft_checkpoint
    for root in (tmp_path / "checkpoints", tmp_path / "sft" / "checkpoints"):
        for step, state in ((1, '{"global_step": 1}'), (2, '{"global_step": 2, "log_hi'), (3, None)):
            d = root / f"checkpoint-{step}"
            d.mkdir(parents=True)
            (d / "config.json").write_text("{}")
            if state is not None:
                (d / "trainer_state.json").write_text(state)
    lookup = find_checkpoints(tmp_path / "checkpoints")
    assert lookup.latest.name == "checkpoint-1"
    assert [(p.name, why.split(" ")[0]) for p, why in lookup.skipped_after(lookup.latest)] == [
        ("checkpoint-2", "damaged"), ("checkpoint-3", "unfinished")]
    assert RunDir(tmp_path).latest_checkpoint().name == "checkpoint-1"
    assert _latest_sft_checkpoint(tmp_path).name == "checkpoint-1"
    assert list(_checkpoints(tmp_path)) == [1]


def test_resume_without_a_usable_checkpoint_exits_2_and_offers_restart(tmp_path):
    run = private_dir(tmp_path / "run")
    write_config(run)
    (run / "events.jsonl").write_text('{"v": 1, "t": 1, "type": "run_start"}\n')
    torn = private_dir(run / "checkpoints" / "checkpoint-4")
    (torn / "trainer_state.json").write_text('{"global_st')
    proc = engine("--run-dir", str(run), "--resume")
    assert proc.returncode == 2 and "no usable checkpoint" in proc.stderr and "--restart" in proc.stderr
    assert "checkpoint-4: damaged trainer_state.json" in proc.stderr


def test_restart_sets_the_old_attempt_aside_and_keeps_the_event_log(tmp_path):
    from grpo_tui.rundir.layout import set_aside_for_restart
    run = RunDir(private_dir(tmp_path / "run"))
    for p in (run.checkpoints / "checkpoint-4", run.root / "rollouts"):
        p.mkdir(parents=True)
    for p in (run.events, run.rollouts, run.config):
        p.write_text("x\n")
    dest = set_aside_for_restart(run)
    assert sorted(os.listdir(dest)) == ["checkpoints", "rollouts", "rollouts.jsonl"]
    assert run.events.read_text() == "x\n" and run.config.exists() and not run.checkpoints.exists()


# ---------------------------------------------------------------- input


@pytest.mark.parametrize("override, key", [
    ("train.learning_rate=nan", "learning_rate"), ("train.temperature=inf", "temperature"),
    ("train.top_p=1.5", "top_p"), ("train.top_p=0", "top_p"), ("train.max_completion_length=-5", "max_completion_length"),
    ("train.warmup_ratio=-0.5", "warmup_ratio"), ("rewards.correctness=nan", "correctness"),
])
def test_non_finite_or_out_of_range_numbers_are_refused(tmp_path, override, key):
    from grpo_tui.engine.config import PresetError
    with pytest.raises(PresetError, match=key):
        load_config("tiny", [override])
    if override == "train.learning_rate=nan":  # and once through the command line: exit 2, nothing written
        proc = engine("--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--set", override)
        assert proc.returncode == 2 and key in proc.stderr and not (tmp_path / "run").exists()


def test_unwritable_run_dir_is_a_clear_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = engine("--preset", "tiny", "--run-dir", str(blocker / "run"))
    assert proc.returncode == 2 and "choose a --run-dir" in proc.stderr and "Traceback" not in proc.stderr
    if not IS_ROOT:  # root writes anywhere; as a user, a read-only parent
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        proc = engine("--preset", "tiny", "--run-dir", str(ro / "run"))
        assert proc.returncode == 2 and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- user rewards


def test_user_reward_that_hangs_is_killed_counted_and_leaves_no_slowdown(tmp_path):
    f = _reward_file(tmp_path, "import time\n"
                     "def slow(prompts, completions, answer, **kwargs):\n"
                     "    if any('hang' in c for c in completions):\n"
                     "        time.sleep(3600)\n"
                     "    return [float(len(c)) for c in completions]\n")
    g = guard(resolve_reward(f"{f}:slow"), "slow", timeout_s=0.5)
    batch = [f"completion {i}" for i in range(16)]
    g(None, batch, None)  # warm

    def timed() -> float:
        t0 = time.perf_counter()
        for _ in range(5):
            assert g(None, batch, None) == [float(len(c)) for c in batch]
        return (time.perf_counter() - t0) / 5

    before = timed()
    pid = g.fn.pid
    t0 = time.monotonic()
    assert g(None, ["hang"], None) == [0.0]
    assert time.monotonic() - t0 < 5
    with pytest.raises(ProcessLookupError):  # the hung worker is gone, not left burning a core
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)
    g(None, batch, None)  # restarts the worker (re-imports the file once)
    after = timed()
    (failure,) = g.drain_failures()
    assert failure["kinds"] == {"timeout": 1}
    assert after < before * 3 + 0.05, (before, after)  # no thread left spinning: same speed as before


def test_user_reward_that_exits_fails_that_call_only(tmp_path):
    f = _reward_file(tmp_path, "import os, sys\n"
                     "def quits(prompts, completions, answer, **kwargs):\n"
                     "    if 'exit' in completions[0]:\n"
                     "        sys.exit(1)\n"
                     "    if 'die' in completions[0]:\n"
                     "        os._exit(1)\n"
                     "    return [1.0] * len(completions)\n")
    g = guard(resolve_reward(f"{f}:quits"), "quits")
    assert g(None, ["exit"], None) == [0.0]
    assert g(None, ["die"], None) == [0.0]
    assert g(None, ["fine", "ok"], None) == [1.0, 1.0]
    (failure,) = g.drain_failures()
    assert failure["kinds"] == {"exception": 2} and "SystemExit" in failure["example"]


@pytest.mark.parametrize("body, needle", [
    ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    ("import os\nos._exit(4)\n", "exited with code 4"),
    ("while True:\n    pass\n", "did not get ready within 2s"),
])
def test_reward_file_that_exits_or_hangs_at_import_is_reported(tmp_path, monkeypatch, body, needle):
    monkeypatch.setenv("GRPO_TUI_REWARD_IMPORT_TIMEOUT_S", "2")
    f = _reward_file(tmp_path, body)
    t0 = time.monotonic()
    with pytest.raises(RewardSpecError) as e:
        resolve_reward(f"{f}:r")
    assert time.monotonic() - t0 < 30
    assert needle in str(e.value) and str(f) in str(e.value)


def test_reward_file_that_hangs_at_import_stops_preflight_with_exit_2(tmp_path):
    f = _reward_file(tmp_path, "while True:\n    pass\n")
    preset = tmp_path / "p.toml"
    preset.write_text(f'extends = "tiny"\n[rewards]\n"{f}:r" = 1.0\n')
    proc = engine("--preset", str(preset), "--run-dir", str(tmp_path / "run"),
                  env={"GRPO_TUI_REWARD_IMPORT_TIMEOUT_S": "3"})
    assert proc.returncode == 2 and str(f) in proc.stderr and "within 3s" in proc.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- signals of the watchers


def _fake_live_run(tmp_path: Path) -> tuple[Path, subprocess.Popen]:
    """A run directory whose engine.pid names a live process (a sleeping child) and that has not ended."""
    run = private_dir(tmp_path / "run")
    ensure_control_dir(run / "control")
    keeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (run / "engine.pid").write_text(str(keeper.pid))
    w = EventWriter(run / "events.jsonl")
    w.emit("run_start", run_dir=str(run), preset="tiny", max_steps=10, reward_names=[], pid=keeper.pid)
    w.state("running", step=1)
    w.close()
    return run, keeper


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_ctrl_c_or_term_in_attach_no_ui_detaches_and_leaves_training_running(tmp_path, sig):
    run, keeper = _fake_live_run(tmp_path)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "grpo_tui.tui.cli", "attach", "--no-ui", str(run)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.monotonic() + 120
        time.sleep(3)
        while time.monotonic() < deadline and proc.poll() is None:
            proc.send_signal(sig)
            try:
                out, _ = proc.communicate(timeout=5)
                break
            except subprocess.TimeoutExpired:
                continue
        assert proc.returncode == 0, out
        assert "detached; training continues" in out and f"grpo-tui stop {run}" in out
        assert os.listdir(run / "control") == []  # no stop command sent
        assert keeper.poll() is None
    finally:
        keeper.kill()


def test_dashboard_attach_ctrl_c_detaches(tmp_path):
    import asyncio

    from grpo_tui.tui.app import Dashboard
    run, keeper = _fake_live_run(tmp_path)

    async def go() -> Dashboard:
        app = Dashboard(run)
        async with app.run_test() as pilot:
            for _ in range(50):
                await pilot.pause(0.1)
                if app.model.active:
                    break
            await pilot.press("ctrl+c")
            await pilot.pause(0.2)
        return app

    try:
        app = asyncio.run(go())
        assert app.left_running and app.return_code == 0
        assert os.listdir(run / "control") == []
    finally:
        keeper.kill()


# ---------------------------------------------------------------- the real engine


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _steps(run: Path) -> list[int]:
    return [e["step"] for e in read_events(run / "events.jsonl") if e["type"] == "step"]


def test_engine_lock_sigterm_torn_line_and_damaged_checkpoint(tmp_path, test_preset):
    """One real run watched by --no-ui: a second engine is refused naming the live pid; SIGTERM to the
    watcher stops the run gracefully; then a torn event line and a damaged newest checkpoint don't stop
    --resume, which falls back to the previous checkpoint and says so."""
    run = tmp_path / "run"
    ui = subprocess.Popen([sys.executable, "-m", "grpo_tui.tui.cli", "--no-ui", "--preset", str(test_preset), "--run-dir",
                           str(run), "--max-steps", "10000", "--set", "train.save_steps=1", "--set",
                           "train.save_total_limit=2"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        _wait_for(lambda: len(_steps(run)) >= 2, 600, "two steps")
        pid = RunDir(run).engine_pid()
        assert run.stat().st_mode & 0o777 == 0o700 and RunLock.holder(run) == pid
        for args in (["--resume"], ["--preset", "tiny"]):
            second = engine("--run-dir", str(run), *args)
            assert second.returncode == 2 and f"engine pid {pid}" in second.stderr, second.stderr
        ui.send_signal(signal.SIGTERM)
        out, _ = ui.communicate(timeout=600)
    finally:
        if ui.poll() is None:
            ui.kill()
    assert ui.returncode == 0, out
    assert "SIGTERM: asked the engine to stop" in out
    events = read_events(run / "events.jsonl")
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "stopped"
    assert RunLock.holder(run) is None
    lookup = find_checkpoints(run / "checkpoints")
    assert len(lookup.usable) == 2
    newest, previous = sorted(lookup.usable)[-1], sorted(lookup.usable)[-2]
    (lookup.usable[newest] / "trainer_state.json").write_text('{"global_step": ')  # torn
    with open(run / "events.jsonl", "a") as f:
        f.write('{"v": 1, "t": 1.0, "type": "step", "st')  # an engine killed mid-event
    proc = engine("--run-dir", str(run), "--resume", "--max-steps", str(previous + 1), timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    starts = [e for e in read_events(run / "events.jsonl") if e["type"] == "run_start"]
    assert len(starts) == 2  # the resumed engine's first event was not swallowed by the torn line
    assert starts[-1]["resume_from"].endswith(f"checkpoint-{previous}")
    assert [Path(s["path"]).name for s in starts[-1]["skipped_checkpoints"]] == [f"checkpoint-{newest}"]
    assert "damaged trainer_state.json" in starts[-1]["skipped_checkpoints"][0]["reason"]
    assert _steps(run)[-1] == previous + 1


@pytest.mark.skipif(not IS_ROOT or not shutil.which("mount"), reason="mounting a tmpfs needs root")
def test_full_disk_ends_the_run_with_a_short_complete_error(tmp_path):
    mnt = tmp_path / "small"  # 1 MB: room for the run's files, not for tiny's 1.8 MB checkpoint (weights + Adam)
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("could not mount a tmpfs here")
    try:
        run = mnt / "run"
        proc = engine("--preset", "tiny", "--run-dir", str(run), "--max-steps", "2", "--set", "train.save_steps=1",
                      timeout=600)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        raw = (run / "events.jsonl").read_bytes()
        assert raw.endswith(b"\n")
        events = read_events(run / "events.jsonl")
        assert len(events) == raw.count(b"\n")  # every line whole
        error = next(e for e in events if e["type"] == "error")
        assert error["message"].startswith("no space left on device while writing checkpoint-1"), error["message"]
        assert [e["type"] for e in events[-2:]] == ["state", "run_end"]
        assert events[-2]["state"] == "failed" and events[-1]["status"] == "failed"
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
