"""Modal questions: confirm stop, quit (leave running or stop), pick a preset, show a pre-flight error,
change live knobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from grpo_tui.tui.fmt import editable
from grpo_tui.tui.switch_choices import PresetChoice
from grpo_tui.tui.text import safe_text


class ConfirmStop(ModalScreen[bool]):
    """Asks before stopping the run. Only y stops: the buttons take no focus, so Enter or Tab do nothing here."""

    BINDINGS = [
        Binding("y", "answer(True)", "Stop", tooltip="the engine finishes the step, checkpoints and exits"),
        Binding("n,escape", "answer(False)", "Cancel", tooltip="keep training"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Stop training?", classes="dialog-title")
            yield Static(
                "The engine finishes the current step, writes a checkpoint and exits. "
                "The run can be continued later with --resume."
            )
            with Horizontal(classes="dialog-buttons"):
                yield _Unfocusable("Stop training (y)", variant="error", id="yes")
                yield _Unfocusable("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class _Unfocusable(Button):
    """A button for the mouse only: a stray Enter or Tab can't press it (the dialog's keys are its letters)."""

    can_focus = False


class QuitDialog(ModalScreen[str | None]):
    """Returns 'leave', 'stop' or None (cancel). Only its letters answer: Enter does nothing."""

    BINDINGS = [
        Binding("l", "answer('leave')", "Leave running", tooltip="close the dashboard, the run goes on"),
        Binding("s", "answer('stop')", "Stop", tooltip="stop the run (checkpoint first), then close"),
        Binding("escape,c", "answer(None)", "Cancel", tooltip="back to the dashboard"),
    ]

    def __init__(self, run_dir: str) -> None:
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Quit the dashboard", classes="dialog-title")
            yield Static(
                safe_text(
                    "The engine is still training. Leave it running in the background "
                    f"(re-attach with: grpo-tui attach {self.run_dir}) or stop it "
                    "(it finishes the step and writes a checkpoint)?"
                )
            )
            with Horizontal(classes="dialog-buttons"):
                yield _Unfocusable("Leave running (l)", variant="primary", id="leave")
                yield _Unfocusable("Stop training (s)", variant="error", id="stop")
                yield _Unfocusable("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)


class PresetPicker(ModalScreen[str | None]):
    """Pick a preset to continue the run under: type to filter, up/down to move, Enter to choose.

    The text box keeps the focus (the list takes none), so typed keys only ever filter. Presets this run can't
    switch to are listed dimmed with the reason; the running one is marked and choosing it does nothing. A path
    to a .toml file typed in full is sent as is (the engine checks it).
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", tooltip="close without switching"),
        Binding(
            "up",
            "move(-1)",
            "Move",
            show=False,
            key_display="↑ ↓",
            tooltip="move through the list; typing filters it, Enter continues under the highlighted "
            "preset (or a typed .toml path)",
        ),
        Binding("down", "move(1)", "Down", show=False),
    ]

    def __init__(self, choices: list[PresetChoice], current: str) -> None:
        super().__init__()
        self.choices, self.current = choices, current
        self.shown: list[PresetChoice] = []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="preset-dialog"):
            yield Label(safe_text(f"Switch preset (now: {self.current})"), classes="dialog-title")
            yield Static(
                "The engine checkpoints at the step boundary and continues from the latest weights under "
                "the new preset, in the same run directory; a paused run stays paused.",
                id="preset-intro",
            )
            yield Input(placeholder="filter, or a path to a .toml file; Enter chooses", id="preset-input")
            yield OptionList(id="preset-list")
            yield Static("", id="preset-why")

    def on_mount(self) -> None:
        self.query_one("#preset-list", OptionList).can_focus = False
        self._filter("")
        self.query_one("#preset-input", Input).focus()
        _fit(self.query_one("#preset-list"), self.app.size.height, PICKER_ROWS)

    def on_resize(self, event: events.Resize) -> None:
        _fit(self.query_one("#preset-list"), event.size.height, PICKER_ROWS)

    def _filter(self, text: str) -> None:
        words = text.lower().split()
        self.shown = [c for c in self.choices if all(w in f"{c.name} {c.description}".lower() for w in words)]
        options = self.query_one("#preset-list", OptionList)
        options.clear_options()
        for c in self.shown:
            line = safe_text(c.name, style="bold" if c.problem is None and not c.running else "dim")
            if c.running:
                line.append("  (running now)", style="italic")
            note = c.problem or c.description
            if note:
                line.append_text(safe_text(f"  {note}", style="dim" if c.problem is None else "dim italic"))
            options.add_option(Option(line, id=c.name))
        first = next((i for i, c in enumerate(self.shown) if c.problem is None and not c.running), None)
        options.highlighted = first if first is not None else (0 if self.shown else None)
        self._explain()

    def _highlighted(self) -> PresetChoice | None:
        i = self.query_one("#preset-list", OptionList).highlighted
        return self.shown[i] if i is not None and 0 <= i < len(self.shown) else None

    def _explain(self, note: str = "") -> None:
        c = self._highlighted()
        if note:
            text = Text(note, style="bold yellow")
        elif c is None:
            text = Text("no preset matches", style="dim")
        elif c.running:
            text = safe_text(f"{c.name} is the run's preset: choosing it changes nothing")
        elif c.problem:
            text = safe_text(f"{c.name} can't continue this run: {c.problem}", style="yellow")
        else:
            text = safe_text(f"Enter: continue under {c.name}")
        self.query_one("#preset-why", Static).update(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._filter(event.value)

    def action_move(self, delta: int) -> None:
        options = self.query_one("#preset-list", OptionList)
        if self.shown:
            i = options.highlighted if options.highlighted is not None else -delta
            options.highlighted = max(0, min(len(self.shown) - 1, i + delta))
        self._explain()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._explain()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()  # a mouse click: the same rules as Enter
        self._choose(self.shown[event.option_index] if 0 <= event.option_index < len(self.shown) else None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        value = event.value.strip()
        if value.endswith(".toml") and not any(c.name == value for c in self.choices):
            if Path(value).expanduser().is_file():
                self.dismiss(str(Path(value).expanduser()))
            else:
                self._explain(f"no file {value}")
            return
        self._choose(self._highlighted())

    def _choose(self, c: PresetChoice | None) -> None:
        if c is None or c.running or c.problem:
            self._explain()  # nothing to switch to: say why, stay open
            return
        self.dismiss(c.name)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PreflightError(ModalScreen[None]):
    """The engine refused to start (bad preset or override): show why, then the app exits."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, output: str) -> None:
        super().__init__()
        self.output = output

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("The engine did not start", classes="dialog-title")
            with VerticalScroll(id="preflight-scroll"):
                yield Static(safe_text(self.output.strip() or "(no output)"), id="preflight-text", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button("Close (enter)", variant="primary", id="close")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


class KnobsDialog(ModalScreen[dict | None]):
    """Change live knobs: learning rate, temperature, top_p, beta, reward weights.

    Returns only the values that differ from the current ones (the args of a `set` command), or None.
    Values are checked with the engine's own rules (rundir.knobs.validate_knobs) before anything is sent.
    """

    BINDINGS = [
        Binding(
            "escape",
            "cancel",
            "Cancel",
            tooltip="close without sending anything; Enter in a field "
            "sends every edited knob, Tab moves between the fields",
        )
    ]

    def __init__(self, current: dict, reward_names: list[str]) -> None:
        super().__init__()
        self.current, self.reward_names = current, reward_names

    def _fields(self) -> list[tuple[str, str, str, str]]:
        """(input id, label, current value as text, one-line help)."""
        from grpo_tui.rundir.knobs import KNOB_HELP, KNOBS, REWARD_WEIGHTS

        out = [
            (f"knob-{k}", KNOBS[k][0], editable(self.current.get(k)), f"{k}: {KNOB_HELP[k]} ({KNOBS[k][1]})")
            for k in KNOBS
        ]
        weights = self.current.get(REWARD_WEIGHTS) or {}
        out += [
            (f"weight-{i}", f"[rewards] {name}", editable(weights.get(name)), f"{name}: {KNOB_HELP[REWARD_WEIGHTS]}")
            for i, name in enumerate(self.reward_names)
        ]
        return out

    def compose(self) -> ComposeResult:
        self._help = {}
        with Vertical(classes="dialog wide", id="knobs-dialog"):
            yield Label("Live knobs", classes="dialog-title")
            yield Static(
                "Applied at the next step boundary without a restart, marked on the curves, and kept by --resume.",
                id="knobs-intro",
            )
            with VerticalScroll(id="knobs-fields"):
                for wid, label, value, help_line in self._fields():
                    self._help[wid] = help_line
                    with Horizontal(classes="knob-row"):
                        yield Label(Text(label), classes="knob-label")
                        field = Input(value=value, id=wid, classes="knob-input", compact=True)
                        field.tooltip = help_line
                        yield field
            yield Static("", id="knob-help")
            yield Static("", id="knobs-error")
            with Horizontal(classes="dialog-buttons"):
                # for the mouse: Tab cycles the fields only, so typing on after a Tab can't press Cancel
                yield _Unfocusable("Apply (enter)", variant="primary", id="apply", compact=True)
                yield _Unfocusable("Cancel (esc)", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        _fit(self.query_one("#knobs-fields"), self.app.size.height, KNOBS_ROWS)

    def on_resize(self, event: events.Resize) -> None:
        _fit(self.query_one("#knobs-fields"), event.size.height, KNOBS_ROWS)

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        # the focused knob's one-line help, under the fields (a line per knob would not fit a small terminal)
        help_line = self._help.get(event.widget.id or "")
        if help_line:
            self.query_one("#knob-help", Static).update(safe_text(help_line, style="dim"))

    def changes(self) -> dict:
        """The set command's args for what was edited; raises KnobError for a bad value."""
        from grpo_tui.rundir.knobs import KNOBS, REWARD_WEIGHTS, validate_knobs

        args: dict = {}
        for k in KNOBS:
            text = self.query_one(f"#knob-{k}", Input).value.strip()
            if text and text != editable(self.current.get(k)):
                args[k] = text
        weights = {}
        old = self.current.get(REWARD_WEIGHTS) or {}
        for i, name in enumerate(self.reward_names):
            text = self.query_one(f"#weight-{i}", Input).value.strip()
            if text and text != editable(old.get(name)):
                weights[name] = text
        if weights:
            args[REWARD_WEIGHTS] = weights
        return validate_knobs(args, self.reward_names) if args else {}

    def _apply(self) -> None:
        from grpo_tui.rundir.knobs import KnobError

        try:
            args = self.changes()
        except KnobError as e:
            self.query_one("#knobs-error", Static).update(Text(str(e), style="bold red"))
            return
        self.dismiss(args or None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self._apply()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


# Rows a dialog needs around its scrolling part (border, title, intro, help and error lines, buttons), and the
# most that part shows: on a low terminal it gets what is left, so the buttons stay on screen.
PICKER_ROWS = (11, 12)
KNOBS_ROWS = (13, 16)


def _fit(widget: Any, screen_height: int, rows: tuple[int, int]) -> None:
    around, most = rows
    widget.styles.max_height = max(3, min(most, screen_height - around))
