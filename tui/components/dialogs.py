"""Modal questions: confirm stop, quit (leave running or stop), pick a preset, show a pre-flight error,
change live knobs."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from grpo_tui.tui.text import safe_text


class ConfirmStop(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Stop"), Binding("n,escape", "answer(False)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Stop training?", classes="dialog-title")
            yield Static("The engine finishes the current step, writes a checkpoint and exits. "
                         "The run can be continued later with --resume.")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop training (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


class QuitDialog(ModalScreen[str | None]):
    """Returns 'leave', 'stop' or None (cancel)."""

    BINDINGS = [Binding("l", "answer('leave')", "Leave running"), Binding("s", "answer('stop')", "Stop"),
                Binding("escape,c", "answer(None)", "Cancel")]

    def __init__(self, run_dir: str) -> None:
        super().__init__()
        self.run_dir = run_dir

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Quit the dashboard", classes="dialog-title")
            yield Static(safe_text("The engine is still training. Leave it running in the background "
                                   f"(re-attach with: grpo-tui attach {self.run_dir}) or stop it "
                                   "(it finishes the step and writes a checkpoint)?"))
            with Horizontal(classes="dialog-buttons"):
                yield Button("Leave running (l)", variant="primary", id="leave")
                yield Button("Stop training (s)", variant="error", id="stop")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_answer(self, answer: str | None) -> None:
        self.dismiss(answer)


class PresetPicker(ModalScreen[str | None]):
    """Pick a shipped preset, or type a name or a path to a .toml file."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, presets: list[tuple[str, str]], current: str) -> None:
        super().__init__()
        self.presets, self.current = presets, current

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(safe_text(f"Switch preset (now: {self.current})"), classes="dialog-title")
            yield Static("The engine checkpoints at the step boundary and continues from the latest "
                         "weights under the new preset, in the same run directory.")
            yield OptionList(*[Option(safe_text(name) + safe_text(f"  {desc}" if desc else "", style="dim"), id=name)
                               for name, desc in self.presets], id="preset-list")
            yield Input(placeholder="or a preset name / path to a .toml file, then Enter", id="preset-input")

    def on_mount(self) -> None:
        options = self.query_one("#preset-list", OptionList)
        for i, (name, _) in enumerate(self.presets):
            if name == self.current:
                options.highlighted = i
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if value:
            self.dismiss(value)

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
    """Change live knobs (issue 16): learning rate, temperature, top_p, beta, reward weights.

    Returns only the values that differ from the current ones (the args of a `set` command), or None.
    Values are checked with the engine's own rules (rundir.knobs.validate_knobs) before anything is sent.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: dict, reward_names: list[str]) -> None:
        super().__init__()
        self.current, self.reward_names = current, reward_names

    def _fields(self) -> list[tuple[str, str, str]]:
        """(input id, label, current value as text)."""
        from grpo_tui.rundir.knobs import KNOBS, REWARD_WEIGHTS
        out = [(f"knob-{k}", KNOBS[k][0], _fmt(self.current.get(k))) for k in KNOBS]
        weights = self.current.get(REWARD_WEIGHTS) or {}
        out += [(f"weight-{i}", f"[rewards] {name}", _fmt(weights.get(name)))
                for i, name in enumerate(self.reward_names)]
        return out

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide", id="knobs-dialog"):
            yield Label("Live knobs", classes="dialog-title")
            yield Static("Applied at the next step boundary without a restart, marked on the curves, and kept "
                         "by --resume.")
            with VerticalScroll(id="knobs-fields"):
                for wid, label, value in self._fields():
                    with Horizontal(classes="knob-row"):
                        yield Label(Text(label), classes="knob-label")
                        yield Input(value=value, id=wid, classes="knob-input")
            yield Static("", id="knobs-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Apply (enter)", variant="primary", id="apply")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def changes(self) -> dict:
        """The set command's args for what was edited; raises KnobError for a bad value."""
        from grpo_tui.rundir.knobs import KNOBS, REWARD_WEIGHTS, validate_knobs
        args: dict = {}
        for k in KNOBS:
            text = self.query_one(f"#knob-{k}", Input).value.strip()
            if text and text != _fmt(self.current.get(k)):
                args[k] = text
        weights = {}
        old = self.current.get(REWARD_WEIGHTS) or {}
        for i, name in enumerate(self.reward_names):
            text = self.query_one(f"#weight-{i}", Input).value.strip()
            if text and text != _fmt(old.get(name)):
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


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
