"""Inside a completion, token by token: each token shaded by its entropy or by how unlikely it was (`t`).

The engine records, for every completion, each token's log-probability under
the policy and the entropy of the distribution it was drawn from (the loss's
own forward pass), and which characters of the text each token is
(`token_chars`). This view shades the text token by token with either value,
marks the group's high-entropy "forking" tokens (where its completions can go
different ways) and shows the row's advantage: a high-entropy token in a
completion with a positive advantage is a choice GRPO reinforces.

Shared by the dashboard and the rollout browser (`open_token_view`): both hand
over the group as its rollouts.jsonl record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, RichLog, Static

from grpo_tui.rundir.rollouts.records import TOKEN_ARRAYS, unpack_array
from grpo_tui.tui.fmt import fixed
from grpo_tui.tui.text import safe_text, visible

# Background per shade level, low to high; the top levels get dark text to stay readable.
SHADES = ("", "on #283a5b", "on #3d5a80", "on #7b4f94", "on #c0485a", "on #f29e4c")
DARK_TEXT = {4, 5}
FORK_STYLE = "bold underline"
FORK_QUANTILE = 0.9  # forking tokens: entropy at or above this quantile of the group's token entropies
TOP_FORKS = 8  # listed under the text
MODES = ("entropy", "logprob")


@dataclass
class TokenRow:
    """One completion's tokens: the text pieces and the per-token arrays (None where not recorded)."""

    text: str
    ids: np.ndarray | None
    chars: np.ndarray | None
    logprobs: np.ndarray | None
    entropies: np.ndarray | None

    @classmethod
    def from_record(cls, c: dict[str, Any]) -> TokenRow:
        """From a completion as rollouts.jsonl holds it (arrays as base64 strings) or as a CompletionRecord dict."""
        arr = {k: unpack_array(c.get(k), dtype) for k, dtype in TOKEN_ARRAYS.items()}
        lengths = [len(a) for a in (arr["token_ids"], arr["token_logprobs"]) if a is not None]
        n = lengths[0] if lengths else None
        for k, a in arr.items():  # arrays of another length can't be lined up with the tokens
            if a is not None and n is not None and len(a) != n:
                arr[k] = None
        text = str(c.get("text") or "")
        chars = arr["token_chars"]
        if chars is not None and int(chars.sum()) > len(text):
            chars = None
        return cls(text, arr["token_ids"], chars, arr["token_logprobs"], arr["token_entropies"])

    @property
    def has_stats(self) -> bool:
        return self.logprobs is not None and self.entropies is not None

    def pieces(self) -> tuple[str, list[str]]:
        """(text before the first token, each token's text). Without `token_chars`, each token as ⟨id⟩."""
        if self.chars is None:
            n = len(self.logprobs) if self.logprobs is not None else 0
            ids = self.ids if self.ids is not None else np.full(n, -1, dtype=np.int32)
            return "", [f"⟨{int(i)}⟩" for i in ids]
        start = len(self.text) - int(self.chars.sum())
        ends = start + np.cumsum(self.chars.astype(np.int64))
        starts = np.concatenate([[start], ends[:-1]])
        return self.text[:start], [self.text[a:b] for a, b in zip(starts.tolist(), ends.tolist())]


def fork_threshold(rows: list[TokenRow]) -> float:
    """The entropy from which a token counts as forking: FORK_QUANTILE of all the group's token entropies,
    when that is above their median (entropies that barely vary, as a random model's, fork nowhere)."""
    vals = [r.entropies.astype(np.float32) for r in rows if r.entropies is not None and len(r.entropies)]
    if not vals:
        return math.inf
    flat = np.concatenate(vals)
    flat = flat[np.isfinite(flat)]
    if not len(flat):
        return math.inf
    at, median = np.quantile(flat, [FORK_QUANTILE, 0.5])
    return float(at) if at > median else math.inf


def shade_values(row: TokenRow, mode: str, entropy_scale: float) -> np.ndarray:
    """Each token's shade in [0, 1]: entropy over the group's largest, or 1 - p (how unlikely the token was)."""
    if mode == "entropy":
        v = row.entropies.astype(np.float64) / max(entropy_scale, 1e-9)
    else:
        v = 1.0 - np.exp(row.logprobs.astype(np.float64))
    return np.clip(np.nan_to_num(v, nan=0.0), 0.0, 1.0)


def level_style(v: float) -> str:
    level = min(int(v * len(SHADES)), len(SHADES) - 1)
    return SHADES[level] + (" #101010" if level in DARK_TEXT else "")


def render_tokens(row: TokenRow, mode: str, entropy_scale: float, fork_at: float) -> Text:
    """The completion's text with each token shaded; forking tokens bold and underlined."""
    prefix, pieces = row.pieces()
    out = Text()
    if prefix:
        out.append(prefix, style="dim")
    values = shade_values(row, mode, entropy_scale)
    ent = row.entropies.astype(np.float32)
    for i, piece in enumerate(pieces[: len(values)]):
        style = level_style(float(values[i]))
        if ent[i] >= fork_at:
            style += " " + FORK_STYLE
        # an empty piece (a special token) or a newline would leave the token invisible
        out.append(piece if piece.strip() else (piece or "·").replace("\n", "↵\n"), style=style)
    return safe_text(out)


def top_forks(row: TokenRow, fork_at: float, n: int = TOP_FORKS) -> Text:
    """The completion's n highest-entropy forking tokens, in text order, with entropy and probability."""
    _, pieces = row.pieces()
    ent = row.entropies.astype(np.float32)
    idx = [int(i) for i in np.argsort(-ent, kind="stable")[:n] if ent[i] >= fork_at]
    out = Text()
    if not idx:
        out.append(
            f"no forking tokens: none at the group's {FORK_QUANTILE:.0%} entropy quantile and above its median",
            style="dim",
        )
        return out
    out.append("forking tokens: ", style="bold")
    for k, i in enumerate(sorted(idx)):
        if k:
            out.append("  ")
        out.append(visible(repr(pieces[i])), style=FORK_STYLE)
        out.append(f" #{i} H {float(ent[i]):.2f} p {math.exp(float(row.logprobs[i])):.2f}", style="dim")
    return out


def legend(mode: str) -> Text:
    out = Text()
    what = "entropy (0 .. the group's highest)" if mode == "entropy" else "1 - p(token) (how unlikely it was)"
    out.append(f"shade: {what}  ", style="dim")
    for i, s in enumerate(SHADES):
        out.append(" low " if i == 0 else "   ", style=level_style((i + 0.5) / len(SHADES)))
    out.append(" high  ", style=level_style(0.99))
    out.append("forking", style=FORK_STYLE)
    return out


class TokenScreen(Screen):
    """One completion of a group, token by token (`s` switches the shading; `,` `.` move within the group)."""

    DEFAULT_CSS = """
    TokenScreen { layout: vertical; }
    TokenScreen #token-head { height: auto; padding: 0 1; }
    TokenScreen #token-body { height: 1fr; border: round $primary; padding: 0 1; }
    TokenScreen #token-forks { height: auto; max-height: 4; padding: 0 1; }
    """
    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("t", "close", "Back", show=False),
        Binding("q", "close", "Back", show=False),
        Binding("s", "toggle_mode", "Shade by", tooltip="shade tokens by entropy or by 1 - p(token)"),
        Binding(
            "comma", "move(-1)", "Completion", key_display=", .", tooltip="previous / next completion of the group"
        ),
        Binding("full_stop", "move(1)", "Next completion", show=False),
    ]

    def __init__(self, step: int, group: dict[str, Any], index: int, mode: str = "entropy") -> None:
        super().__init__()
        self.step, self.group = step, group
        self.comps: list[dict[str, Any]] = [c if isinstance(c, dict) else {} for c in group.get("completions") or []]
        self.rows = [TokenRow.from_record(c) for c in self.comps]
        self.index = min(max(index, 0), max(len(self.comps) - 1, 0))
        self.mode = mode
        with_stats = [r for r in self.rows if r.has_stats]
        self.fork_at = fork_threshold(with_stats)
        ents = [float(np.nanmax(r.entropies.astype(np.float32))) for r in with_stats if len(r.entropies)]
        self.entropy_scale = max(ents) if ents else 1.0
        self._width = 0

    def compose(self) -> ComposeResult:
        yield Static(id="token-head")
        yield RichLog(id="token-body", wrap=True, markup=False, highlight=False, auto_scroll=False, min_width=1)
        yield Static(id="token-forks")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#token-body").border_title = "Tokens"
        self._draw()

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:  # wrapped for the old width
            self._width = event.size.width
            self._draw()

    def _draw(self) -> None:
        head = Text()
        n = len(self.comps)
        head.append(
            f"step {self.step} · group {self.group.get('group', '?')} · completion {self.index + 1}/{n}", style="bold"
        )
        body = self.query_one("#token-body", RichLog)
        forks = self.query_one("#token-forks", Static)
        body.clear()
        if not n:
            self.query_one("#token-head", Static).update(safe_text(head))
            body.write(Text("This group has no completions.", style="dim"))
            forks.update("")
            return
        c, row = self.comps[self.index], self.rows[self.index]
        adv = c.get("advantage")
        head.append("   advantage ")
        adv_style = (
            "bold green"
            if isinstance(adv, (int, float)) and adv > 0
            else ("bold red" if isinstance(adv, (int, float)) and adv < 0 else "bold")
        )
        head.append(fixed(adv, signed=True, finite_only=True), style=adv_style)
        head.append(f"   total {fixed(c.get('total'), finite_only=True)}   {c.get('tokens', '?')} tokens")
        if row.has_stats and len(row.logprobs):
            head.append(
                f"   mean H {float(np.mean(row.entropies.astype(np.float32))):.2f}"
                f"   mean logp {float(np.mean(row.logprobs.astype(np.float32))):.2f}",
                style="dim",
            )
        head.append("\n")
        head.append_text(legend(self.mode))
        self.query_one("#token-head", Static).update(safe_text(head))
        width = body.scrollable_content_region.width
        if not row.has_stats:
            body.write(
                Text(
                    "No per-token log-probabilities or entropies in this record: it was written before "
                    "they were recorded, by a run on several processes, or by a loss that doesn't compute "
                    "them. The text:\n\n",
                    style="dim",
                ),
                width=width if width > 0 else None,
            )
            body.write(safe_text(row.text), width=width if width > 0 else None, scroll_end=False)
            forks.update("")
        else:
            body.write(
                render_tokens(row, self.mode, self.entropy_scale, self.fork_at),
                width=width if width > 0 else None,
                scroll_end=False,
            )
            forks.update(top_forks(row, self.fork_at))
        body.scroll_to(0, 0, animate=False)

    def action_toggle_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self._draw()

    def action_move(self, delta: int) -> None:
        if self.comps:
            self.index = (self.index + delta) % len(self.comps)
            self._draw()

    def action_close(self) -> None:
        self.dismiss()


def open_token_view(app: Any, groups: Any) -> None:
    """Push the token view for the completion selected in a GroupTable (dashboard or browser)."""
    group, step = groups.current_group, groups.step
    if group is None or step is None:
        app.notify("No completion selected yet.", severity="warning")
        return
    app.push_screen(TokenScreen(step, group, groups.table.cursor_row))
