"""Fault injection: what a hostile or unlucky user can do to a run directory, and what the engine does then.

Most cases are refused by the engine's pre-flight (exit 2, before torch loads), so they run the real
`python -m grpo_tui.engine train` in a child process and cost a second or two. Two scenarios run real training
with the tiny preset: one engine watched by `grpo-tui --no-ui` (second engine refused, SIGTERM, torn event line,
damaged newest checkpoint, resume; recorded once by module fixtures, one claim per test), and a run on a full disk
(a small tmpfs; root only).
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
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from support.paths import REPO
from support.polling import wait_until
from support.processes import run_engine

from grpo_tui.engine.config import load_config
from grpo_tui.engine.rewards import RewardSpecError, guard, resolve_reward
from grpo_tui.rundir.checkpoints import find_checkpoints
from grpo_tui.rundir.control import ensure_control_dir, send_command, take_commands
from grpo_tui.rundir.errors import UnsafeRunDir
from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.event_writer import EventWriter
from grpo_tui.rundir.layout import RunDir
from grpo_tui.rundir.private_io import open_private
from grpo_tui.rundir.rollouts import RolloutWriter
from grpo_tui.rundir.run_lock import RunLock

IS_ROOT = os.geteuid() == 0
NOBODY = 65534
# the two ways a second engine can try a run directory that is in use
SECOND_ENGINES = {"resume": ["--resume"], "new-run": ["--preset", "tiny"]}


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


@pytest.mark.parametrize(
    "entry",
    [
        ".config.json.tmp",
        "engine.pid",
        "rollouts.jsonl",
        "engine.log",
        "engine.log.1",
        "events.jsonl",
        "engine.lock",
        "control",
        "trackers",
    ],
)
def test_a_link_in_the_run_dir_is_refused_and_its_target_untouched(tmp_path, entry):
    target = tmp_path / "victim"
    if entry in ("control", "trackers"):
        target.mkdir()
        (target / "precious.json").write_text('{"command": "stop"}')
    else:
        target.write_text("precious\n")
    before = snapshot(target)
    run = private_dir(tmp_path / "run")
    (run / entry).symlink_to(target)
    proc = run_engine(["--preset", "tiny", "--run-dir", str(run)])
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
    proc = run_engine(["--run-dir", str(run), "--resume"])
    assert proc.returncode == 2 and "can be written by other users" in proc.stderr and str(target) in proc.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to create a directory owned by another user")
def test_run_dir_owned_by_another_user_is_refused(tmp_path):
    run = private_dir(tmp_path / "run")
    os.chown(run, NOBODY, NOBODY)
    proc = run_engine(["--preset", "tiny", "--run-dir", str(run)])
    assert proc.returncode == 2 and "belongs to" in proc.stderr and str(run) in proc.stderr


def test_new_run_dirs_and_files_are_owner_only(tmp_path):
    from grpo_tui.rundir.private_io import make_private_dir, write_private

    make_private_dir(tmp_path / "a", "run directory")
    write_private(tmp_path / "a" / "f", "x")
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700 and (tmp_path / "a" / "f").stat().st_mode & 0o777 == 0o600


def test_group_access_is_an_option_for_new_run_dirs_and_files(tmp_path, monkeypatch):
    from grpo_tui.rundir.private_io import GROUP_ACCESS_ENV, make_private_dir, write_private

    monkeypatch.setenv(GROUP_ACCESS_ENV, "1")
    make_private_dir(tmp_path / "b", "run directory")
    write_private(tmp_path / "b" / "f", "x")
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
    proc = run_engine(["--run-dir", str(run), "--resume"])
    assert proc.returncode == 2 and "can be written by other users" in proc.stderr and str(reward) in proc.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give a file to another user")
def test_a_reward_file_owned_by_another_user_is_refused(tmp_path):
    reward = _reward_file(tmp_path)
    os.chmod(reward, 0o644)
    os.chown(reward, NOBODY, NOBODY)
    with pytest.raises(RewardSpecError, match="belongs to"):
        resolve_reward(f"{reward}:r")


def _switch_problem(preset: Path) -> str | None:
    from grpo_tui.engine.train.preset_switch import switch_problem

    return switch_problem(load_config("tiny"), str(preset))


def _other_preset(tmp_path: Path, mode: int) -> Path:
    preset = tmp_path / "other.toml"
    preset.write_text('extends = "tiny"\n')
    os.chmod(preset, mode)
    return preset


def test_switch_preset_naming_a_preset_others_can_write_is_refused(tmp_path):
    preset = _other_preset(tmp_path, 0o666)
    why = _switch_problem(preset)
    assert why and "can be written by other users" in why and str(preset) in why


def test_switch_preset_takes_a_preset_only_its_owner_can_write(tmp_path):
    assert _switch_problem(_other_preset(tmp_path, 0o644)) is None


@pytest.mark.skipif(not IS_ROOT, reason="needs root to give a file to another user")
def test_switch_preset_naming_another_users_preset_is_refused(tmp_path):
    preset = _other_preset(tmp_path, 0o644)
    os.chown(preset, NOBODY, NOBODY)
    assert "belongs to" in _switch_problem(preset)


# ---------------------------------------------------------------- one writer


def _run_to_lock(tmp_path: Path) -> Path:
    run = private_dir(tmp_path / "run")
    write_config(run)
    (run / "events.jsonl").write_text("")
    return run


def test_the_lock_names_the_process_that_holds_it(tmp_path):
    run = _run_to_lock(tmp_path)
    lock = RunLock.acquire(run)
    try:
        assert RunLock.holder(run) == os.getpid()
    finally:
        lock.release()


@pytest.mark.parametrize("attempt", list(SECOND_ENGINES))
def test_second_engine_is_refused_while_the_lock_is_held(tmp_path, attempt):
    run = _run_to_lock(tmp_path)
    lock = RunLock.acquire(run)
    try:
        proc = run_engine(["--run-dir", str(run), *SECOND_ENGINES[attempt]])
        assert proc.returncode == 2 and f"engine pid {os.getpid()}" in proc.stderr, proc.stderr
    finally:
        lock.release()


def test_a_released_lock_has_no_holder(tmp_path):
    run = _run_to_lock(tmp_path)
    RunLock.acquire(run).release()
    assert RunLock.holder(run) is None  # released: the kernel drops a flock with its last descriptor


def test_lock_survives_exec_in_the_same_process(tmp_path):
    # the preset switch and `accelerate launch` re-execute the engine in place: the lock must come along
    run = private_dir(tmp_path / "run")
    script = tmp_path / "relock.py"
    script.write_text(
        "import os, sys, time\n"
        "from grpo_tui.rundir.run_lock import RunLock\n"
        "lock = RunLock.acquire(sys.argv[1])\n"
        "if len(sys.argv) == 2:\n"
        "    lock.keep_across_exec()\n"
        "    os.execv(sys.executable, [sys.executable, __file__, sys.argv[1], 'again'])\n"
        "print(os.getpid(), RunLock.holder(sys.argv[1]), flush=True)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script), str(run)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
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
    from grpo_tui.engine.failure import describe_failure

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
    from grpo_tui.engine.eval.resolve import run_checkpoints
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
        ("checkpoint-2", "damaged"),
        ("checkpoint-3", "unfinished"),
    ]
    assert RunDir(tmp_path).latest_checkpoint().name == "checkpoint-1"
    assert _latest_sft_checkpoint(tmp_path).name == "checkpoint-1"
    assert list(run_checkpoints(tmp_path)) == [1]


def test_resume_without_a_usable_checkpoint_exits_2_and_offers_restart(tmp_path):
    run = private_dir(tmp_path / "run")
    write_config(run)
    (run / "events.jsonl").write_text('{"v": 1, "t": 1, "type": "run_start"}\n')
    torn = private_dir(run / "checkpoints" / "checkpoint-4")
    (torn / "trainer_state.json").write_text('{"global_st')
    proc = run_engine(["--run-dir", str(run), "--resume"])
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


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.learning_rate=nan", "learning_rate"),
        ("train.temperature=inf", "temperature"),
        ("train.top_p=1.5", "top_p"),
        ("train.top_p=0", "top_p"),
        ("train.max_completion_length=-5", "max_completion_length"),
        ("train.warmup_ratio=-0.5", "warmup_ratio"),
        ("rewards.correctness=nan", "correctness"),
    ],
)
def test_non_finite_or_out_of_range_numbers_are_refused(tmp_path, override, key):
    from grpo_tui.engine.config import PresetError

    with pytest.raises(PresetError, match=key):
        load_config("tiny", [override])


def test_a_non_finite_number_on_the_command_line_exits_2_and_writes_nothing(tmp_path):
    proc = run_engine(["--preset", "tiny", "--run-dir", str(tmp_path / "run"), "--set", "train.learning_rate=nan"])
    assert proc.returncode == 2 and "learning_rate" in proc.stderr and not (tmp_path / "run").exists()


def test_a_run_dir_under_a_file_is_a_clear_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = run_engine(["--preset", "tiny", "--run-dir", str(blocker / "run")])
    assert proc.returncode == 2 and "choose a --run-dir" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(IS_ROOT, reason="root writes anywhere")
def test_a_run_dir_under_a_read_only_parent_is_a_clear_exit_2(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    proc = run_engine(["--preset", "tiny", "--run-dir", str(ro / "run")])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


# ---------------------------------------------------------------- user rewards


class HungCall(NamedTuple):
    """A guarded user reward whose call hangs, timed against the same reward's normal calls."""

    returned: list[float]
    seconds: float
    worker_gone: bool
    failures: list[dict]
    before_s: float
    after_s: float


def _gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def hung_call(tmp_path_factory) -> HungCall:
    f = _reward_file(
        tmp_path_factory.mktemp("hang"),
        "import time\n"
        "def slow(prompts, completions, answer, **kwargs):\n"
        "    if any('hang' in c for c in completions):\n"
        "        time.sleep(3600)\n"
        "    return [float(len(c)) for c in completions]\n",
    )
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
    returned = g(None, ["hang"], None)
    seconds = time.monotonic() - t0
    gone = _gone(pid)
    g(None, batch, None)  # restarts the worker (re-imports the file once)
    after = timed()
    return HungCall(returned, seconds, gone, g.drain_failures(), before, after)


def test_a_user_reward_call_that_hangs_scores_0_within_seconds(hung_call):
    assert hung_call.returned == [0.0]
    assert hung_call.seconds < 5


def test_a_user_reward_worker_that_hangs_is_killed(hung_call):
    assert hung_call.worker_gone  # the hung worker is gone, not left burning a core


def test_a_user_reward_call_that_hangs_is_counted_as_a_timeout(hung_call):
    (failure,) = hung_call.failures
    assert failure["kinds"] == {"timeout": 1}


def test_a_user_reward_that_hung_leaves_no_slowdown(hung_call):
    # no thread left spinning: same speed as before
    assert hung_call.after_s < hung_call.before_s * 3 + 0.05, (hung_call.before_s, hung_call.after_s)


def test_user_reward_that_exits_fails_that_call_only(tmp_path):
    f = _reward_file(
        tmp_path,
        "import os, sys\n"
        "def quits(prompts, completions, answer, **kwargs):\n"
        "    if 'exit' in completions[0]:\n"
        "        sys.exit(1)\n"
        "    if 'die' in completions[0]:\n"
        "        os._exit(1)\n"
        "    return [1.0] * len(completions)\n",
    )
    g = guard(resolve_reward(f"{f}:quits"), "quits")
    assert g(None, ["exit"], None) == [0.0]
    assert g(None, ["die"], None) == [0.0]
    assert g(None, ["fine", "ok"], None) == [1.0, 1.0]
    (failure,) = g.drain_failures()
    assert failure["kinds"] == {"exception": 2} and "SystemExit" in failure["example"]


@pytest.mark.parametrize(
    "body, needle",
    [
        ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
        ("import os\nos._exit(4)\n", "exited with code 4"),
        ("while True:\n    pass\n", "did not get ready within 2s"),
    ],
)
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
    proc = run_engine(
        ["--preset", str(preset), "--run-dir", str(tmp_path / "run")], env={"GRPO_TUI_REWARD_IMPORT_TIMEOUT_S": "3"}
    )
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
        proc = subprocess.Popen(
            [sys.executable, "-m", "grpo_tui.tui.cli", "attach", "--no-ui", str(run)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
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
                if app.state.active:
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


def _steps(run: Path) -> list[int]:
    return [e["step"] for e in read_events(run / "events.jsonl") if e["type"] == "step"]


class WatchedRun(NamedTuple):
    """What one real run watched by `grpo-tui --no-ui` showed while it trained and after SIGTERM stopped it."""

    dir: Path
    pid: int
    mode_while_running: int
    lock_holder_while_running: int | None
    second_engines: dict[str, subprocess.CompletedProcess]
    watcher_returncode: int
    watcher_output: str
    events_after_stop: list[dict]
    lock_holder_after_stop: int | None
    usable_checkpoints: list[int]


class ResumedPastDamage(NamedTuple):
    """`--resume` of the stopped run after its newest checkpoint and its last event line were damaged."""

    proc: subprocess.CompletedProcess
    newest: int
    previous: int
    starts: list[dict]
    steps: list[int]


@pytest.fixture(scope="module")
def watched_run(tmp_path_factory, test_preset) -> WatchedRun:
    """One real run watched by --no-ui, checkpointing every step: a second engine tries the run dir while it
    trains, then SIGTERM goes to the watcher. Everything the tests check is recorded here, at the moment it holds."""
    run = tmp_path_factory.mktemp("watched") / "run"
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grpo_tui.tui.cli",
            "--no-ui",
            "--preset",
            str(test_preset),
            "--run-dir",
            str(run),
            "--max-steps",
            "10000",
            "--set",
            "train.save_steps=1",
            "--set",
            "train.save_total_limit=2",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        wait_until(lambda: len(_steps(run)) >= 2, 600, "two steps")
        pid = RunDir(run).engine_pid()
        mode, holder = run.stat().st_mode & 0o777, RunLock.holder(run)
        second = {name: run_engine(["--run-dir", str(run), *args]) for name, args in SECOND_ENGINES.items()}
        ui.send_signal(signal.SIGTERM)
        out, _ = ui.communicate(timeout=600)
    finally:
        if ui.poll() is None:
            ui.kill()
    return WatchedRun(
        dir=run,
        pid=pid,
        mode_while_running=mode,
        lock_holder_while_running=holder,
        second_engines=second,
        watcher_returncode=ui.returncode,
        watcher_output=out,
        events_after_stop=read_events(run / "events.jsonl"),
        lock_holder_after_stop=RunLock.holder(run),
        usable_checkpoints=sorted(find_checkpoints(run / "checkpoints").usable),
    )


@pytest.fixture(scope="module")
def resumed_past_damage(watched_run) -> ResumedPastDamage:
    """Tear the newest checkpoint's trainer_state.json and the event log's last line (an engine killed
    mid-event), then `--resume` one step past the previous checkpoint."""
    run = watched_run.dir
    lookup = find_checkpoints(run / "checkpoints")
    newest, previous = sorted(lookup.usable)[-1], sorted(lookup.usable)[-2]
    (lookup.usable[newest] / "trainer_state.json").write_text('{"global_step": ')  # torn
    with open(run / "events.jsonl", "a") as f:
        f.write('{"v": 1, "t": 1.0, "type": "step", "st')
    proc = run_engine(["--run-dir", str(run), "--resume", "--max-steps", str(previous + 1)], timeout=600)
    starts = [e for e in read_events(run / "events.jsonl") if e["type"] == "run_start"]
    return ResumedPastDamage(proc, newest, previous, starts, _steps(run))


def test_a_running_engines_run_dir_is_owner_only(watched_run):
    assert watched_run.mode_while_running == 0o700


def test_a_running_engine_holds_the_run_lock(watched_run):
    assert watched_run.lock_holder_while_running == watched_run.pid


@pytest.mark.parametrize("attempt", list(SECOND_ENGINES))
def test_a_second_engine_is_refused_naming_the_live_pid(watched_run, attempt):
    second = watched_run.second_engines[attempt]
    assert second.returncode == 2 and f"engine pid {watched_run.pid}" in second.stderr, second.stderr


def test_sigterm_to_the_watcher_asks_the_engine_to_stop_and_exits_0(watched_run):
    assert watched_run.watcher_returncode == 0, watched_run.watcher_output
    assert "SIGTERM: asked the engine to stop" in watched_run.watcher_output


def test_sigterm_to_the_watcher_ends_the_run_as_stopped(watched_run):
    last = watched_run.events_after_stop[-1]
    assert last["type"] == "run_end" and last["status"] == "stopped"


def test_a_stopped_run_releases_its_lock(watched_run):
    assert watched_run.lock_holder_after_stop is None


def test_save_total_limit_keeps_that_many_usable_checkpoints(watched_run):
    assert len(watched_run.usable_checkpoints) == 2


def test_resume_succeeds_past_a_damaged_checkpoint_and_a_torn_event_line(resumed_past_damage):
    proc = resumed_past_damage.proc
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_torn_last_event_line_does_not_swallow_the_resumed_engines_first_event(resumed_past_damage):
    assert len(resumed_past_damage.starts) == 2


def test_resume_falls_back_to_the_previous_checkpoint(resumed_past_damage):
    assert resumed_past_damage.starts[-1]["resume_from"].endswith(f"checkpoint-{resumed_past_damage.previous}")


def test_resume_names_the_skipped_damaged_checkpoint_and_why(resumed_past_damage):
    skipped = resumed_past_damage.starts[-1]["skipped_checkpoints"]
    assert [Path(s["path"]).name for s in skipped] == [f"checkpoint-{resumed_past_damage.newest}"]
    assert "damaged trainer_state.json" in skipped[0]["reason"]


def test_resume_trains_on_from_the_previous_checkpoint(resumed_past_damage):
    assert resumed_past_damage.steps[-1] == resumed_past_damage.previous + 1


class FullDiskRun(NamedTuple):
    """A tiny run on a disk too small for its first checkpoint, and what `attach --no-ui` shows of it."""

    proc: subprocess.CompletedProcess
    raw_log: bytes
    events: list[dict]
    shown: subprocess.CompletedProcess


NO_SPACE = "no space left on device while writing checkpoint-1"
needs_tmpfs = pytest.mark.skipif(not IS_ROOT or not shutil.which("mount"), reason="mounting a tmpfs needs root")


@pytest.fixture(scope="module")
def full_disk_run(tmp_path_factory) -> Iterator[FullDiskRun]:
    mnt = tmp_path_factory.mktemp("small")  # 1 MB: room for the run's files, not for tiny's checkpoint (weights + Adam)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("could not mount a tmpfs here")
    try:
        run = mnt / "run"
        proc = run_engine(
            ["--preset", "tiny", "--run-dir", str(run), "--max-steps", "2", "--set", "train.save_steps=1"], timeout=600
        )
        shown = subprocess.run(
            [sys.executable, "-m", "grpo_tui.tui.cli", "attach", "--no-ui", str(run)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ, COLUMNS="250"),
        )
        yield FullDiskRun(proc, (run / "events.jsonl").read_bytes(), read_events(run / "events.jsonl"), shown)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


@needs_tmpfs
def test_a_full_disk_fails_the_run_with_exit_1(full_disk_run):
    assert full_disk_run.proc.returncode == 1, full_disk_run.proc.stdout + full_disk_run.proc.stderr


@needs_tmpfs
def test_a_full_disk_leaves_every_event_line_whole(full_disk_run):
    assert full_disk_run.raw_log.endswith(b"\n")
    assert len(full_disk_run.events) == full_disk_run.raw_log.count(b"\n")  # every line whole


@needs_tmpfs
def test_a_full_disk_error_event_says_what_was_being_written(full_disk_run):
    error = next(e for e in full_disk_run.events if e["type"] == "error")
    assert error["message"].startswith(NO_SPACE), error["message"]


@needs_tmpfs
def test_a_full_disk_run_ends_failed_at_the_last_completed_step(full_disk_run):
    events = full_disk_run.events
    assert [e["type"] for e in events[-2:]] == ["state", "run_end"]
    assert events[-2]["state"] == "failed" and events[-1]["status"] == "failed"
    assert events[-2]["step"] == 1 and events[-1]["step"] == 1  # the last completed step, not 0


@needs_tmpfs
def test_attach_no_ui_shows_the_full_disk_cause_not_a_traceback(full_disk_run):
    shown = full_disk_run.shown
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert f"[failed] at step 1: {NO_SPACE}" in shown.stdout
    assert f"cause: {NO_SPACE}" in shown.stdout
    assert "Traceback" not in shown.stdout and "unexpected pos" not in shown.stdout


# ---------------------------------------------------------------- long logs, failures, control from a shell


def _long_log(run: Path, source: Path, steps: int) -> None:
    """A finished run of `steps` steps, its records copied from a real tiny run's (each step renumbered)."""
    events = read_events(source / "events.jsonl")
    step = next(e for e in events if e["type"] == "step")
    start = {**next(e for e in events if e["type"] == "run_start"), "max_steps": steps}
    with open(run / "events.jsonl", "w", encoding="utf-8") as f:
        f.write(json.dumps(start) + "\n")
        f.write(json.dumps({**step, "type": "state", "state": "running", "step": 0}) + "\n")
        for i in range(1, steps + 1):
            f.write(json.dumps({**step, "step": i, "max_steps": steps, "t": start["t"] + i}) + "\n")
        f.write(
            json.dumps(
                {
                    "v": 1,
                    "t": start["t"] + steps,
                    "type": "state",
                    "state": "finished",
                    "step": steps,
                    "detail": "finished",
                }
            )
            + "\n"
        )
        f.write(
            json.dumps(
                {
                    "v": 1,
                    "t": start["t"] + steps,
                    "type": "run_end",
                    "status": "finished",
                    "step": steps,
                    "exit_code": 0,
                }
            )
            + "\n"
        )


def test_attach_no_ui_reads_a_20000_step_log_over_16_mb_to_its_end(tmp_path, tiny_run):
    run = private_dir(tmp_path / "run")
    _long_log(run, tiny_run.dir, 20000)
    assert (run / "events.jsonl").stat().st_size > 16 << 20
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_tui.tui.cli", "attach", "--no-ui", str(run)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    summary = proc.stdout[proc.stdout.index("Run summary") :]
    assert "finished" in summary and "20000/20000" in summary and "gone" not in summary


def test_event_readers_stream_a_long_log_in_bounded_chunks(tmp_path):
    from grpo_tui.rundir.event_reader import EventTail, iter_events

    path = tmp_path / "events.jsonl"
    w = EventWriter(path)
    for i in range(1, 2001):
        w.emit("step", step=i, metrics={"reward": 0.5, "pad": "x" * 200})
    w.close()
    batches = list(iter_events(path, chunk_bytes=16 << 10))
    assert len(batches) > 20 and max(len(b) for b in batches) < 100  # each batch is one chunk's events
    assert [e["step"] for b in batches for e in b] == list(range(1, 2001))
    assert [e["step"] for e in read_events(path)] == list(range(1, 2001))
    tail = EventTail(path)
    assert sum(len(b) for b in tail.read_all(16 << 10)) == 2000 and list(tail.read_all()) == []


def test_an_event_line_longer_than_a_chunk_is_skipped_not_a_stall(tmp_path):
    from grpo_tui.rundir.event_reader import EventTail

    path = tmp_path / "events.jsonl"
    with open(path, "w") as f:
        f.write(json.dumps({"v": 1, "t": 1.0, "type": "step", "step": 1}) + "\n")
        f.write(json.dumps({"v": 1, "t": 1.0, "type": "error", "message": "x" * (64 << 10)}) + "\n")
        f.write(json.dumps({"v": 1, "t": 1.0, "type": "step", "step": 2}) + "\n")
    tail = EventTail(path)
    got = [e for b in tail.read_all(8 << 10) for e in b]
    assert [e.get("step") for e in got] == [1, 2] and tail.skipped == 1


def test_no_ui_shows_the_cause_of_a_failure_not_a_traceback_tail(tmp_path):
    from rich.console import Console

    from grpo_tui.rundir.state import summarize
    from grpo_tui.tui.headless import event_line, print_summary

    cause = "no space left on device while writing checkpoint-3 (in /runs/x)"
    events = [
        {"type": "run_start", "preset": "tiny", "max_steps": 10, "reward_names": []},
        *({"type": "step", "step": i, "max_steps": 10, "metrics": {"reward": 0.1}} for i in (1, 2, 3)),
        {"type": "checkpoint", "step": 2, "path": "/runs/x/checkpoints/checkpoint-2", "reason": "interval"},
        {
            "type": "error",
            "message": cause,
            "traceback": "Traceback...\nRuntimeError: [enforce fail at inline_container.cc:664] unexpected pos 64 vs 0",
        },
        {"type": "state", "state": "failed", "step": 3},
        {"type": "run_end", "status": "failed", "step": 3, "exit_code": 1},
    ]
    s = summarize(events)
    lines = [event_line(e, s) for e in events]
    assert ("[failed] at step 3: " + cause, "red") in lines
    console = Console(width=250, record=True)
    print_summary(console, s, Path("/runs/x"), 1)
    out = console.export_text()
    assert f"cause: {cause}" in out and "unexpected pos" not in out
    assert "grpo-tui --resume --run-dir /runs/x" in out and "3/10" in out


def _steal(run: Path, uid: int = NOBODY) -> None:
    for p in [run, *run.rglob("*")]:
        os.lchown(p, uid, uid)


@pytest.mark.skipif(not IS_ROOT, reason="giving a directory to another user needs root")
@pytest.mark.parametrize("command", ["stop", "pause", "resume", "checkpoint", "set"])
def test_control_commands_refuse_another_users_run_dir_and_write_nothing(tmp_path, command):
    vault = tmp_path / "vault"  # a root-only folder the other user's run points its control/ at
    vault.mkdir(mode=0o700)
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    (run / "control").symlink_to(vault)
    (run / "events.jsonl").write_text("")
    _steal(run)
    extra = ["learning_rate=1e-5"] if command == "set" else []
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_tui.tui.cli", command, str(run), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "belongs to" in proc.stderr and "Traceback" not in proc.stderr
    assert os.listdir(vault) == [] and sorted(os.listdir(run)) == ["control", "events.jsonl"]


@pytest.mark.skipif(not IS_ROOT, reason="giving a directory to another user needs root")
def test_send_command_refuses_a_control_dir_that_is_a_link_or_not_ours(tmp_path):
    vault = private_dir(tmp_path / "vault")
    run = private_dir(tmp_path / "run")
    (run / "control").symlink_to(vault)
    with pytest.raises(UnsafeRunDir, match="symbolic link"):
        send_command(run / "control", "stop")
    (run / "control").unlink()
    ensure_control_dir(run / "control")
    os.chown(run / "control", NOBODY, NOBODY)
    with pytest.raises(UnsafeRunDir, match="belongs to"):
        send_command(run / "control", "stop")
    assert os.listdir(vault) == [] and os.listdir(run / "control") == []


def test_a_fifo_in_control_is_rejected_without_blocking_the_watcher(tmp_path):
    control = tmp_path / "control"
    ensure_control_dir(control)
    os.mkfifo(control / "0-fifo.json")
    cid = send_command(control, "pause")
    t0 = time.monotonic()
    cmds = take_commands(control)
    assert time.monotonic() - t0 < 5
    assert [c["command"] for c in cmds] == ["invalid", "pause"] and cmds[1]["id"] == cid
    assert "not a regular file" in cmds[0]["args"]["error"] and os.listdir(control) == []


def test_liveness_comes_from_the_run_lock_not_a_stale_pid_file(tmp_path):
    run = private_dir(tmp_path / "run")
    (run / "engine.pid").write_text(str(os.getppid()))  # a live process that is not an engine
    lock = RunLock.acquire(run)
    try:
        assert RunDir(run).engine_pid() == os.getpid()
    finally:
        lock.release()
    assert RunDir(run).engine_pid() is None  # lock free: the engine is gone, whatever engine.pid says
    w = EventWriter(run / "events.jsonl")
    w.emit("run_start", run_dir=str(run), preset="tiny", max_steps=10, reward_names=[])
    w.state("running", step=1)
    w.close()
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_tui.tui.cli", "attach", "--no-ui", str(run)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "gone" in proc.stdout, proc.stdout + proc.stderr


def test_a_reader_probing_the_lock_does_not_make_an_engine_refuse_the_run(tmp_path):
    import fcntl

    run = private_dir(tmp_path / "run")
    RunLock.acquire(run).release()  # the lock file exists, free, naming this (now finished) holder
    fd = os.open(run / "engine.lock", os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what RunLock.holder does for an instant

    def let_go() -> None:
        time.sleep(0.05)
        os.close(fd)

    import threading

    threading.Thread(target=let_go).start()
    RunLock.acquire(run).release()


# ---------------------------------------------------------------- export


HOSTILE_NAME = "run\x1b]0;pwned\x07\x1b]52;c;ZWNobyBoaQ==\x07[click](javascript:evil) <b>*x*<b>\x7f"


def _hostile_copy(tmp_path: Path, source: Path) -> Path:
    """The tiny run under a name full of escapes and markdown, its preset's description likewise, with a stop
    string and the one-shot example."""
    run = tmp_path / HOSTILE_NAME
    shutil.copytree(source, run, symlinks=True)
    cfg = json.loads((run / "config.json").read_text())
    cfg["preset"]["name"] = "tiny\x1b[2J`code`"
    cfg["preset"]["description"] = "desc \x1b]0;title\x07 \x9b31m | # [link](file:///etc/shadow) ```\nline2"
    cfg["train"]["stop_strings"] = ["</answer>"]
    cfg["prompt"]["one_shot"] = True
    (run / "config.json").write_text(json.dumps(cfg))
    return run


def test_model_card_escapes_markdown_and_drops_control_characters(tmp_path, tiny_run):
    from grpo_tui.tui.console.export import main as export_main

    run = _hostile_copy(tmp_path, tiny_run.dir)
    out = tmp_path / "export"
    assert export_main([str(run), "--out", str(out)]) == 0
    card = out / "README.md"
    found = subprocess.run(["grep", "-P", r"[\x00-\x08\x1b\x7f]", str(card)], capture_output=True)
    assert found.returncode == 1, found.stdout  # 1: no line matched
    text = card.read_text(encoding="utf-8")
    assert "\x9b" not in text and "\x07" not in text
    assert r"\[click\]\(javascript:evil\)" in text and r"\<b\>\*x\*\<b\>" in text  # shown, not rendered
    assert "[link](file" not in text and "\\`code\\`" in text
    fenced, headings = False, []
    for line in text.splitlines():
        fenced ^= line.startswith("```")
        headings += [line] if line.startswith("#") and not fenced else []
    assert len([h for h in headings if h.startswith("# ")]) == 1, headings  # the description's "#" made none
    # trained with a stop string and the one-shot example: the export says both
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["stop_strings"] == ["</answer>"] and "tokenizer=tokenizer" in text
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)
    ids = model.generate(**tok("What is 2+2?", return_tensors="pt"), tokenizer=tok, max_new_tokens=4)
    assert ids.shape[1] > 0  # the exported generation config loads and generates with its stop strings
    from grpo_tui.engine.data.prompts import EXAMPLE_QUESTION
    from grpo_tui.engine.rewards.answer_format import answer_format

    assert EXAMPLE_QUESTION in text and answer_format("reasoning").example in text


def test_export_refuses_an_out_inside_any_run_directory(tmp_path, tiny_run, capsys):
    from grpo_tui.tui.console.export import main as export_main

    run = tiny_run.dir
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    other = private_dir(tmp_path / "other-run")
    (other / "events.jsonl").write_text("")
    for out in (run / "sft" / "model", run / "export", run / "checkpoints" / "x", other / "deep" / "er"):
        assert export_main([str(run), "--out", str(out)]) == 2, out
        assert "inside the run directory" in capsys.readouterr().err
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    assert os.listdir(other) == ["events.jsonl"]


# ---------------------------------------------------------------- bad inputs at every door


def test_resume_with_a_config_json_that_is_not_an_object_is_a_clear_exit_2(tmp_path):
    run = private_dir(tmp_path / "run")
    for body in ("[1, 2, 3]", '"tiny"', "null"):
        (run / "config.json").write_text(body)
        os.chmod(run / "config.json", 0o600)
        proc = run_engine(["--run-dir", str(run), "--resume"])
        assert proc.returncode == 2, proc.stderr
        assert "not an object" in proc.stderr and "Traceback" not in proc.stderr


def test_eval_refuses_a_negative_limit(capsys):
    from grpo_tui.tui.console.eval import main as eval_main

    for flag, value in (("--limit", "-3"), ("--samples", "-1"), ("--max-new-tokens", "0"), ("--batch-size", "-8")):
        with pytest.raises(SystemExit) as e:
            eval_main(["--model", "tiny-random", "--dataset", "synthetic", flag, value])
        assert e.value.code == 2
        assert flag in capsys.readouterr().err


def test_control_timeout_must_be_positive(tmp_path, capsys):
    from grpo_tui.tui.console.control import main as control_main

    with pytest.raises(SystemExit) as e:
        control_main("stop", [str(tmp_path), "--timeout", "-1"])
    assert e.value.code == 2 and "--timeout" in capsys.readouterr().err


def test_compare_says_a_log_of_random_bytes_is_unreadable(tmp_path):
    from grpo_tui.tui.console.compare import load_runs

    good, bad = private_dir(tmp_path / "good"), private_dir(tmp_path / "bad\x1b[2J")
    w = EventWriter(good / "events.jsonl")
    w.emit("run_start", run_dir=str(good), preset="tiny", max_steps=2, reward_names=[])
    w.emit("step", step=1, metrics={"reward": 0.5})
    w.close()
    (bad / "events.jsonl").write_bytes(os.urandom(4096).replace(b"{", b"(") + b"\n" + os.urandom(100))
    runs, problems = load_runs([good, bad])
    assert [r.name for r in runs] == ["good"]
    assert len(problems) == 1 and "not an event log" in problems[0] and "\x1b" not in problems[0]
    with open(good / "events.jsonl", "a") as f:
        f.write("garbage line\n")
    runs, problems = load_runs([good, good])
    assert not problems and "1 damaged line(s) skipped" in runs[0].state


def test_run_list_shows_whole_step_counts(tmp_path):
    from support.dashboard import run_coroutine, wait_for

    from grpo_tui.tui.browser.app import BrowserApp, RunListScreen

    root = tmp_path / "runs"
    run = private_dir(root / "long")
    w = EventWriter(run / "events.jsonl")
    w.emit("run_start", run_dir=str(run), preset="tiny", max_steps=20000, reward_names=[])
    w.emit("step", step=20000, max_steps=20000, metrics={"reward": 0.5})
    w.emit("run_end", status="finished", step=20000, exit_code=0)
    w.close()

    async def go() -> str:
        app = BrowserApp(None, root, poll_s=0.1)
        async with app.run_test(size=(140, 30)) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, RunListScreen) and app.screen.runs, what="runs")
            await pilot.pause(0.2)
            return app.export_screenshot()

    import html
    import re

    shown = html.unescape(run_coroutine(go()))
    assert "20000/20000" in shown, [t for t in re.findall(r">([^<]*)</text>", shown) if "00" in t]


def test_presets_explain_shows_a_presets_name_and_description_as_text(tmp_path):
    import io

    from rich.console import Console

    from grpo_tui.tui.console.presets import explain

    preset = tmp_path / "evil.toml"
    preset.write_text(
        'extends = "tiny"\n[preset]\nname = "[link=file:///etc/shadow]x[/link]\\u001b]0;t\\u0007"\n'
        'description = "[bold red]\\u001b[2Jd[@click=app.quit]"\n'
    )
    out = io.StringIO()
    assert explain(str(preset), None, Console(file=out, force_terminal=True, width=200)) == 0
    text = out.getvalue()
    assert "\x1b]8;" not in text and "\x1b]0;" not in text and "\x1b[2J" not in text  # no link, no title, no clear
    plain = Console(file=io.StringIO(), width=200)
    explain(str(preset), None, plain)
    shown = plain.file.getvalue()
    assert "[link=file:///etc/shadow]x[/link]" in shown and "[bold red]" in shown and "[@click=app.quit]" in shown


def _csv(tmp_path: Path, lines: list[str]) -> Path:
    f = tmp_path / "data.csv"
    f.write_text("\n".join(lines) + "\n")
    return f


def test_a_csv_with_unbalanced_quotes_is_refused_not_trained_on_garbled_rows(tmp_path):
    from grpo_tui.engine.config import DataConfig, PresetError
    from grpo_tui.engine.data.loader import load_rows

    lines = ["question,answer"] + [('"' if i % 2 else "") + f"What is {i} plus {i}?,{2 * i}" for i in range(1, 31)]
    cfg = DataConfig(source="file", data_files=[str(_csv(tmp_path, lines))], gold_format="plain")
    with pytest.raises(PresetError, match="look malformed") as e:
        load_rows(cfg, seed=0)
    assert "bad_csv" in str(e.value) and "lines 2-4" in str(e.value), str(e.value)


def test_csv_rows_with_a_broken_quote_or_wrong_field_count_are_counted(tmp_path):
    from grpo_tui.engine.config import DataConfig
    from grpo_tui.engine.data.loader import load_rows

    good = [f"What is {i}?,{i}" for i in range(1, 21)]
    lines = ["question,answer", *good[:10], "Too,many,fields,9", "question,answer", '"Broken"x,3', *good[10:]]
    rows, report = load_rows(
        DataConfig(source="file", data_files=[str(_csv(tmp_path, lines))], gold_format="plain", shuffle=False), seed=0
    )
    assert [r["answer"] for r in rows] == [str(i) for i in range(1, 21)]
    assert dict(report.skipped) == {"bad_csv": 2, "malformed": 1}  # a header line read as a row: gold "answer"
    assert "line 12: 4 fields, the header has 2" in report.first_bad["bad_csv"]


def test_jsonl_whose_rows_mostly_lack_the_fields_is_refused(tmp_path):
    from grpo_tui.engine.config import DataConfig, PresetError
    from grpo_tui.engine.data.loader import load_rows

    f = tmp_path / "data.jsonl"
    rows = [{"q": f"What is {i}?", "a": str(i)} for i in range(3)] + [{"text": f"row {i}"} for i in range(10)]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = DataConfig(source="file", data_files=[str(f)], question_field="q", answer_field="a", gold_format="plain")
    with pytest.raises(PresetError, match="most rows .* look malformed"):
        load_rows(cfg, seed=0)


# ---------------------------------------------------------------- engine.log


def test_engine_log_is_cut_at_its_cap_whatever_a_child_process_prints(tmp_path):
    from grpo_tui.engine.log_cap import LogCap
    from grpo_tui.rundir.layout import older_part

    log = private_dir(tmp_path / "run") / "engine.log"
    cap = LogCap(log, max_bytes=1 << 20, every_s=0.05).start()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:  # a reward worker: inherits the descriptor and prints 10 MB a call, past any Python stream of the engine
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import os, sys, time\n"
                "for i in range(5):\n"
                "    os.write(1, (str(i) * ((10 << 20) - 1)).encode() + b'\\n'); time.sleep(0.3)\n",
            ],
            stdout=fd,
            timeout=120,
        )
        assert child.returncode == 0
        time.sleep(0.5)
    finally:
        os.close(fd)
        cap.stop()
    assert log.stat().st_size < 4096, log.stat().st_size  # cut after the last call: only the marker is left
    older = older_part(log).read_bytes()
    assert len(older) == 1 << 20 and older.endswith(b"4" * 1000 + b"\n")  # the last part of the last call
    assert older_part(log).stat().st_mode & 0o077 == 0


def test_check_now_cuts_the_log_between_two_of_the_watchers_looks(tmp_path):
    from grpo_tui.engine import log_cap
    from grpo_tui.rundir.layout import older_part

    log = private_dir(tmp_path / "run") / "engine.log"
    cap = log_cap.LogCap(log, max_bytes=1 << 20, every_s=3600).start()  # the watcher never looks in this test
    try:
        with open(log, "ab") as f:
            f.write(b"y" * (2 << 20))
        assert log.stat().st_size == 2 << 20
        log_cap.check_now()
        assert log.stat().st_size < 4096 and older_part(log).stat().st_size == 1 << 20
    finally:
        cap.stop()
    log_cap.check_now()  # stopped: nothing to check, no error


def test_a_link_planted_as_the_older_part_mid_run_is_never_written_and_the_cap_keeps_watching(tmp_path):
    from grpo_tui.engine import log_cap
    from grpo_tui.rundir.layout import older_part

    log = private_dir(tmp_path / "run") / "engine.log"
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    cap = log_cap.LogCap(log, max_bytes=1 << 20, every_s=0.05).start()
    try:
        older_part(log).symlink_to(victim)
        with open(log, "ab") as f:
            f.write(b"y" * (2 << 20))
        log_cap.check_now()  # refused, not raised: a reward call around it goes on
        time.sleep(0.3)
        assert cap._thread.is_alive() and victim.read_text() == "keep me"
        older_part(log).unlink()
        deadline = time.monotonic() + 10
        while log.stat().st_size > 4096 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.stat().st_size < 4096 and older_part(log).stat().st_size == 1 << 20  # the watcher still cuts
    finally:
        cap.stop()


def test_a_reward_printing_10_mb_a_call_leaves_engine_log_capped(tmp_path):
    from grpo_tui.rundir.layout import ENGINE_LOG_MAX_BYTES, older_part

    (tmp_path / "loud.py").write_text(
        "def loud(completions, **kwargs):\n"
        "    print('x' * (10 << 20), flush=True)\n"
        "    return [0.0 for _ in completions]\n"
    )
    preset = tmp_path / "loud.toml"
    preset.write_text(f'extends = "tiny"\n[rewards]\ncorrectness = 1.0\n"{tmp_path / "loud.py"}:loud" = 1.0\n')
    run = tmp_path / "run"
    proc = run_engine(
        ["--preset", str(preset), "--run-dir", str(run), "--max-steps", "3", "--log-to-run-dir"], timeout=600
    )
    assert proc.returncode == 0, (run / "engine.log").read_bytes()[-3000:]
    log, older = run / "engine.log", older_part(run / "engine.log")
    assert older.stat().st_size <= ENGINE_LOG_MAX_BYTES  # 30 MB printed: the log was cut
    assert log.stat().st_size <= ENGINE_LOG_MAX_BYTES + (1 << 20)  # checked after every call and at exit
    assert b"x" * 1000 in older.read_bytes()


def test_a_fifo_planted_as_the_event_log_blocks_no_reader(tmp_path):
    run = private_dir(tmp_path / "run")
    os.mkfifo(run / "events.jsonl")
    readers = (
        "import sys\nfrom pathlib import Path\n"
        "from grpo_tui.rundir.event_reader import read_events\nfrom grpo_tui.rundir.state import fold_run\n"
        "from grpo_tui.tui.console.compare import load_runs\n"
        "run = Path(sys.argv[1])\n"
        "assert read_events(run / 'events.jsonl') == [] and fold_run(run).steps == []\n"
        "print(load_runs([run, run])[1])\n"
    )
    # each in a child with a deadline: a reader that blocks fails the test instead of hanging it
    proc = subprocess.run(
        [sys.executable, "-c", readers, str(run)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_tui.tui.cli", "attach", "--no-ui", str(run)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr


def test_a_fifo_planted_as_the_rollout_log_blocks_no_reader(tmp_path):
    run = private_dir(tmp_path / "run")
    os.mkfifo(run / "rollouts.jsonl")
    readers = (
        "import sys\nfrom pathlib import Path\n"
        "from grpo_tui.rundir.rollouts import RolloutTail, open_rollouts, read_rollouts\n"
        "run = Path(sys.argv[1])\n"
        "assert read_rollouts(run) == ([], 0)\n"
        "assert RolloutTail(run / 'rollouts.jsonl').read_new() == []\n"
        "assert open_rollouts(run).num_groups == 0\n"
    )
    # in a child with a deadline: a reader that blocks fails the test instead of hanging it
    proc = subprocess.run(
        [sys.executable, "-c", readers, str(run)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
