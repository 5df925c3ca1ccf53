"""The reward playground screen: edit a completion and the gold answer, see every reward of the preset
recompute as you type, with the extracted answer and the verdict.

Scoring is engine.rewards.score_completion.score_completion (the same code as `grpo-tui rewards`), run in a
thread worker a moment after the last keystroke, so a slow reward (math-verify) never blocks typing.
Opened from the dashboard (r, or the command palette: the selected completion and its gold, the run's
rewards) and by `grpo-tui rewards --ui [--preset P]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static, TextArea

from grpo_tui.engine.rewards.score_completion import EXAMPLE_COMPLETION, score_completion
from grpo_tui.tui.fmt import score
from grpo_tui.tui.text import safe_text

DEBOUNCE_S = 0.15


def result_table(result: dict[str, Any]) -> Table:
    t = Table(expand=True, header_style="bold", show_edge=False, box=None, padding=(0, 1))
    t.add_column("reward", ratio=1, overflow="fold")
    t.add_column("score", justify="right", no_wrap=True)
    t.add_column("×w", justify="right", no_wrap=True)
    t.add_column("= weighted", justify="right", no_wrap=True)
    for row in result["rewards"]:
        name = safe_text(row["name"])
        if row["failure"]:
            name.append(f"  ! {row['failure']['kind']}", style="bold red")
        t.add_row(name, score(row["score"]), f"{row['weight']:g}", score(row["weighted"]))
    t.add_section()
    t.add_row(Text("total", style="bold"), "", "", Text(score(result["total"]), style="bold"))
    return t


def verdict_text(result: dict[str, Any], gold: str) -> Text:
    t = Text("extracted ", style="dim")
    extracted = result["extracted"]
    if extracted is None:
        t.append("none (no answer found)", style="bold red")
    else:
        t.append_text(safe_text(extracted, style="bold green" if result["correct"] else "bold yellow"))
    t.append("   gold ", style="dim")
    t.append_text(safe_text(gold, style="bold"))
    t.append("   ")
    t.append(
        "✓ correct" if result["correct"] else "✗ incorrect", style="bold green" if result["correct"] else "bold red"
    )
    t.append(f"\n{result['prompt_format']} format", style="dim")
    return t


class PlaygroundScored(Message):
    def __init__(self, key: tuple[str, str], result: dict[str, Any] | None, error: str | None) -> None:
        super().__init__()
        self.key, self.result, self.error = key, result, error


class PlaygroundScreen(Screen):
    """A completion editor and the gold answer on the left; the rewards, total and verdict on the right."""

    BINDINGS = [Binding("escape", "close", "Back"), Binding("ctrl+r", "rescore", "Score again")]
    DEFAULT_CSS = """
    PlaygroundScreen #pg-main { height: 1fr; }
    PlaygroundScreen #pg-left { width: 3fr; }
    PlaygroundScreen #pg-right { width: 2fr; min-width: 44; border: round $primary 60%; border-title-color: $text;
                                 padding: 0 1; }
    PlaygroundScreen #pg-completion { height: 1fr; border: round $primary 60%; }
    PlaygroundScreen #pg-completion:focus { border: round $accent; }
    PlaygroundScreen #pg-gold { width: 1fr; }
    PlaygroundScreen #pg-gold-row { height: 3; }
    PlaygroundScreen #pg-gold-row Label { padding: 1 1 0 1; }
    PlaygroundScreen #pg-verdict { height: auto; margin-bottom: 1; }
    """

    def __init__(
        self,
        rewards: dict[str, Any] | None,
        prompt_format: str = "reasoning",
        base_dir: Path | None = None,
        completion: str = EXAMPLE_COMPLETION,
        gold: str = "7",
        source: str = "",
    ) -> None:
        super().__init__()
        self.rewards, self.prompt_format, self.base_dir = rewards, prompt_format, base_dir
        self.start_completion, self.start_gold, self.source = completion, gold, source
        self.result: dict[str, Any] | None = None
        self.scored = 0  # results shown (tests wait on it)
        self.standalone = False
        self._timer: Any = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="pg-main"):
            with Vertical(id="pg-left"):
                with Horizontal(id="pg-gold-row"):
                    yield Label("gold")
                    yield Input(self.start_gold, id="pg-gold", placeholder="the gold answer")
                yield TextArea(self.start_completion, id="pg-completion", soft_wrap=True, tab_behavior="focus")
            with VerticalScroll(id="pg-right"):
                yield Static("", id="pg-verdict")
                yield Static("scoring…", id="pg-scores")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "reward playground"
        self.query_one("#pg-completion").border_title = "Completion (edit me)"
        right = self.query_one("#pg-right")
        right.border_title = "Rewards" + (f" of {self.source}" if self.source else " (the recipe's set)")
        self.query_one("#pg-completion", TextArea).focus()
        self.action_rescore()

    # ------------------------------------------------------------ scoring
    def _key(self) -> tuple[str, str]:
        return self.query_one("#pg-completion", TextArea).text, self.query_one("#pg-gold", Input).value

    def on_text_area_changed(self, event: TextArea.Changed) -> None:
        self._schedule()

    def on_input_changed(self, event: Input.Changed) -> None:
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.stop()
        self._timer = self.set_timer(DEBOUNCE_S, self.action_rescore)

    def action_rescore(self) -> None:
        self._timer = None
        self.score(self._key())

    @work(thread=True, exclusive=True, group="score")
    def score(self, key: tuple[str, str]) -> None:
        text, gold = key
        try:
            result = score_completion(text, gold, self.rewards, self.prompt_format, self.base_dir)
        except Exception as e:  # noqa: BLE001 - a reward spec problem is shown, not raised into the UI
            self.post_message(PlaygroundScored(key, None, f"{type(e).__name__}: {e}"))
            return
        self.post_message(PlaygroundScored(key, result, None))

    def on_playground_scored(self, msg: PlaygroundScored) -> None:
        if msg.key != self._key():
            return  # typed on meanwhile: a newer score is on its way
        if msg.error is not None:
            self.query_one("#pg-scores", Static).update(safe_text(msg.error, style="bold red"))
            return
        self.result = msg.result
        self.query_one("#pg-verdict", Static).update(verdict_text(msg.result, msg.key[1]))
        self.query_one("#pg-scores", Static).update(result_table(msg.result))
        self.scored += 1

    def action_close(self) -> None:
        if self.standalone:  # the whole app (`grpo-tui compare` / `rewards --ui`): leave it
            self.app.exit(0)
        else:
            self.app.pop_screen()


def run_rewards(
    rewards: dict[str, Any] | None, prompt_format: str, base_dir: Path | None, gold: str, completion: str, source: str
) -> int:
    class PlaygroundApp(App[int]):
        TITLE = "grpo-tui rewards"

        def on_mount(self) -> None:
            screen = PlaygroundScreen(rewards, prompt_format, base_dir, completion, gold, source)
            screen.standalone = True
            self.push_screen(screen)

    app = PlaygroundApp()
    result = app.run()
    if app.return_code:
        return app.return_code
    return int(result or 0)
