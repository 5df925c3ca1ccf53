"""The typed event records: the writer checks every event against them, the engine's call sites use
only known types and states, docs/run-directory.md agrees with them, and the writer is thread-safe."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from grpo_tui.rundir import event_docs
from grpo_tui.rundir.event_reader import read_events
from grpo_tui.rundir.event_writer import EventWriter
from grpo_tui.rundir.events import ACTIVE_STATES, COMMANDS, RECORDS, Command, State

ROOT = Path(__file__).resolve().parent.parent


def test_emit_writes_the_record_fields_and_enums_as_strings(tmp_path: Path) -> None:
    w = EventWriter(tmp_path / "events.jsonl")
    w.state(State.PAUSED, step=3)
    w.emit("command", id="a", command=Command.PAUSE, status="done")
    w.emit("step", step=1, metrics={"reward": float("nan")})
    w.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert '"state": "paused"' in lines[0] and '"command": "pause"' in lines[1]
    evs = read_events(tmp_path / "events.jsonl")
    assert [e["type"] for e in evs] == ["state", "command", "step"]
    assert evs[0]["state"] == State.PAUSED == "paused" and evs[2]["metrics"] == {"reward": None}
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in evs)


@pytest.mark.parametrize(
    "type_, fields, message",
    [
        ("stats", {"x": 1}, "unknown event type 'stats'"),
        ("step", {"step": 1, "reward": 0.5}, "no field(s) reward"),
        ("step", {"max_steps": 3}, "needs field(s) step"),
        ("state", {"state": "sleeping"}, "state='sleeping' is not one of"),
        ("command", {"id": "x", "command": "dance", "status": "done"}, "command='dance'"),
        ("run_end", {"status": "exploded"}, "status='exploded'"),
    ],
)
def test_emit_refuses_what_no_record_describes(tmp_path: Path, type_: str, fields: dict, message: str) -> None:
    w = EventWriter(tmp_path / "events.jsonl")
    with pytest.raises(ValueError, match=re.escape(message)):
        w.emit(type_, **fields)
    w.close()
    assert (tmp_path / "events.jsonl").read_text() == "", "nothing is written for a refused event"


def test_the_engines_other_ranks_check_events_too() -> None:
    from grpo_tui.engine.distributed import NullEvents

    with pytest.raises(ValueError, match="no field"):
        NullEvents().emit("memory", step=1, colour="red")


def test_every_call_site_names_a_known_type_and_state() -> None:
    """A static scan, so an engine path the tests don't run still can't write an undocumented event."""
    emits, states = set(), set()
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "rundir").rglob("*.py"), ROOT / "bench" / "tui_cpu.py"]:
        text = path.read_text(encoding="utf-8")
        emits |= {(m, path.name) for m in re.findall(r"\bemit(?:\(\s*|,\s*)\"(\w+)\"", text)}
        states |= {(m, path.name) for m in re.findall(r"\.state\(\s*\"(\w+)\"", text)}
    assert len(emits) >= 15 and len(states) >= 5
    assert [e for e in emits if e[0] not in RECORDS] == []
    assert [s for s in states if s[0] not in set(State)] == []
    # every record is written somewhere (a record nobody writes is a stale doc)
    assert set(RECORDS) == {e for e, _ in emits}


def test_states_and_commands_have_one_home() -> None:
    from grpo_tui.rundir import control

    assert control.COMMANDS is COMMANDS and Command.INVALID not in COMMANDS
    assert State.FINISHED not in ACTIVE_STATES and State.PAUSED in ACTIVE_STATES
    lists = []
    for path in [*(ROOT / "engine").rglob("*.py"), *(ROOT / "tui").rglob("*.py"), *(ROOT / "rundir").rglob("*.py")]:
        text = path.read_text(encoding="utf-8")
        if re.search(r'"pausing",\s*"paused"', text) or re.search(r'"pause",\s*"resume",\s*"checkpoint"', text):
            lists.append(path.name)
    assert lists == [], f"a hand-written list of states or commands: {lists}"


def test_the_docs_tables_agree_with_the_records() -> None:
    assert event_docs.main(["--check"]) == 0, "run: python -m grpo_tui.rundir.event_docs"
    doc = event_docs.DOC.read_text(encoding="utf-8")
    for type_name, rec in RECORDS.items():
        assert f"### `{type_name}`" in doc
        for name in rec.FIELDS:
            assert f"| `{name}` |" in doc


def test_a_stale_doc_is_caught(tmp_path: Path, monkeypatch) -> None:
    doc = tmp_path / "run-directory.md"
    doc.write_text(event_docs.DOC.read_text(encoding="utf-8").replace("| `eta_s` |", "| `eta` |"))
    monkeypatch.setattr(event_docs, "DOC", doc)
    assert event_docs.main(["--check"]) == 1
    assert event_docs.main([]) == 0 and event_docs.main(["--check"]) == 0  # regenerated


def test_the_writer_holds_its_own_lock(tmp_path: Path) -> None:
    """Callers need no lock of their own: emit takes the writer's (the watcher, recorder and trainer threads emit)."""
    w = EventWriter(tmp_path / "events.jsonl")
    with w._lock:  # another thread is mid-write
        t = threading.Thread(target=w.emit, args=("error",), kwargs={"message": "m"})
        t.start()
        t.join(0.3)
        assert t.is_alive() and (tmp_path / "events.jsonl").read_text() == ""
    t.join(5)
    assert not t.is_alive()
    w.close()
    assert [e["message"] for e in read_events(tmp_path / "events.jsonl")] == ["m"]
