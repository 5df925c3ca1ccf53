"""The results files and the before/after comparison of several evaluated models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_results(out_dir: Path, rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "results.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))


def percent(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


COMPARE_METRICS: list[tuple[str, Callable[[dict[str, Any]], float | None]]] = [
    ("greedy pass@1 strict", lambda s: s.get("greedy", {}).get("strict", {}).get("accuracy")),
    ("greedy pass@1 flexible", lambda s: s.get("greedy", {}).get("flexible", {}).get("accuracy")),
    ("format rate", lambda s: s.get("greedy", {}).get("format_rate")),
    ("truncated", lambda s: s.get("greedy", {}).get("truncated_frac")),
]


def compare(summaries: list[dict[str, Any]], rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Before/after table: each metric per model, the change from the first, and per-item fixed/broken counts."""
    metrics = list(COMPARE_METRICS)
    k = (summaries[0].get("sampled") or {}).get("k")
    if k and all((s.get("sampled") or {}).get("k") == k for s in summaries):
        metrics += [
            (f"pass@{k} strict", lambda s, k=k: s["sampled"]["strict"][f"pass@{k}"]),
            (f"maj@{k} strict", lambda s, k=k: s["sampled"]["strict"][f"maj@{k}"]["accuracy"]),
        ]
    table = []
    for name, get in metrics:
        vals = [get(s) for s in summaries]
        base = vals[0]
        table.append(
            {"metric": name, "values": vals, "delta": [None if v is None or base is None else v - base for v in vals]}
        )
    paired = []
    first = {r["id"]: r for r in rows[0]}
    for s, rs in zip(summaries[1:], rows[1:]):
        both = [(first[r["id"]], r) for r in rs if r["id"] in first and "correct" in r]
        for mode, col in (("strict", "correct"), ("flexible", "correct_flex")):
            paired.append(
                {
                    "model": s["model"],
                    "mode": mode,
                    "items": len(both),
                    "fixed": sum(1 for a, b in both if b[col] and not a[col]),
                    "broken": sum(1 for a, b in both if a[col] and not b[col]),
                }
            )
    return {
        "models": [s["model"] for s in summaries],
        "dataset": summaries[0].get("dataset"),
        "n": summaries[0].get("n"),
        "table": table,
        "paired": paired,
    }


def compare_markdown(cmp: dict[str, Any]) -> str:
    heads = cmp["models"]
    lines = [
        f"| metric | {' | '.join(heads)} | " + " | ".join(f"Δ {h}" for h in heads[1:]) + " |",
        "|---" * (1 + len(heads) + len(heads) - 1) + "|",
    ]
    for row in cmp["table"]:
        vals = " | ".join(percent(v) for v in row["values"])
        deltas = " | ".join("-" if d is None else f"{100 * d:+.1f}" for d in row["delta"][1:])
        lines.append(f"| {row['metric']} (%) | {vals} | {deltas} |")
    for p in cmp["paired"]:
        lines.append(
            f"\n{p['model']} vs {heads[0]} ({p['mode']}): fixed {p['fixed']}, broke {p['broken']} of {p['items']} items"
        )
    return "\n".join(lines) + "\n"
