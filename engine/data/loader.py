"""Training problems: GSM8K (hub or local files), any local JSONL/Parquet, or synthetic.

Every source ends as rows {"question", "answer"} where answer is the bare gold
answer. Rows that can't be used (no gold answer, empty question, a line that
isn't JSON) are skipped and counted by reason, never a crash.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from engine.config import DataConfig, PresetError, PromptConfig
from engine.data.synthetic import generate

GSM8K_HUB = ("openai/gsm8k", "main")


@dataclass
class DataReport:
    source: str
    origin: str
    rows_total: int = 0
    rows_used: int = 0
    skipped: Counter = field(default_factory=Counter)

    def as_event(self) -> dict[str, Any]:
        return {"source": self.source, "origin": self.origin, "rows_total": self.rows_total,
                "rows_used": self.rows_used, "rows_skipped": sum(self.skipped.values()),
                "skipped": dict(self.skipped)}


def check_files(cfg: DataConfig) -> None:
    """Cheap pre-flight check, before the run directory is touched."""
    for f in cfg.data_files:
        p = Path(f).expanduser()
        if not p.is_file():
            raise PresetError(f"[data] data_files: {f} does not exist (paths are relative to {Path.cwd()}).")
        if p.suffix not in (".jsonl", ".json", ".parquet"):
            raise PresetError(f"[data] data_files: {f}: use .jsonl or .parquet files.")


def _read_file(path: Path, report: DataReport) -> Iterable[dict[str, Any]]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        yield from pq.read_table(path).to_pylist()
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                report.rows_total += 1
                report.skipped["bad_json"] += 1
                continue
            if isinstance(row, dict):
                yield row
            else:
                report.rows_total += 1
                report.skipped["bad_json"] += 1


def _gold_kind(cfg: DataConfig, raw: str) -> str:
    if cfg.gold_format != "auto":
        return cfg.gold_format
    if "####" in raw:
        return "gsm8k"
    if "\\boxed" in raw:
        return "boxed"
    return "plain"


def _rows_from(records: Iterable[dict[str, Any]], cfg: DataConfig, qf: str, af: str, kind: str | None,
               report: DataReport) -> list[dict[str, str]]:
    from engine.rewards import gold_from_solution
    rows = []
    for rec in records:
        report.rows_total += 1
        question = rec.get(qf)
        raw = rec.get(af)
        if not isinstance(question, str) or not question.strip():
            report.skipped["empty_question"] += 1
            continue
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            report.skipped["no_gold"] += 1
            continue
        raw = str(raw)
        gold = gold_from_solution(raw, kind or _gold_kind(cfg, raw))
        if not gold:
            report.skipped["no_gold"] += 1
            continue
        rows.append({"question": question.strip(), "answer": gold})
    return rows


def load_rows(cfg: DataConfig, seed: int) -> tuple[list[dict[str, str]], DataReport]:
    if cfg.source == "synthetic":
        report = DataReport("synthetic", f"built-in, difficulty {cfg.synthetic_difficulty}")
        problems = generate(cfg.synthetic_size, cfg.synthetic_difficulty, seed)
        rows = _rows_from(problems, cfg, "question", "answer", "plain", report)
    elif cfg.data_files:
        paths = [Path(f).expanduser() for f in cfg.data_files]
        report = DataReport(cfg.source, ", ".join(map(str, paths)))
        qf, af = ("question", "answer") if cfg.source == "gsm8k" else (cfg.question_field, cfg.answer_field)
        kind = "gsm8k" if cfg.source == "gsm8k" else None
        rows = []
        for p in paths:
            rows += _rows_from(_read_file(p, report), cfg, qf, af, kind, report)
    elif cfg.source == "gsm8k":
        # The real hub path: users have the hub even though CI does not.
        from datasets import load_dataset
        report = DataReport("gsm8k", f"hub {GSM8K_HUB[0]} ({GSM8K_HUB[1]}), split {cfg.split}")
        ds = load_dataset(*GSM8K_HUB, split=cfg.split)
        rows = _rows_from(ds, cfg, "question", "answer", "gsm8k", report)
    else:
        raise PresetError(f"[data] source = {cfg.source!r} needs data_files.")
    if cfg.shuffle:
        random.Random(seed).shuffle(rows)
    if cfg.max_examples:
        rows = rows[: cfg.max_examples]
    report.rows_used = len(rows)
    if not rows:
        raise PresetError(f"[data] no usable rows in {report.origin} "
                          f"(skipped: {dict(report.skipped) or 'none'}); check question_field/answer_field.")
    return rows, report


def to_dataset(rows: list[dict[str, str]], prompt: PromptConfig) -> Any:
    """A datasets.Dataset with a conversational 'prompt' column; 'answer' reaches rewards as a kwarg."""
    from datasets import Dataset
    from engine.data.prompts import build_messages, system_prompt
    system = system_prompt(prompt.format, prompt.system_prompt)
    shot = prompt.format if prompt.one_shot else None
    return Dataset.from_list([{"prompt": build_messages(r["question"], system, shot), "question": r["question"],
                               "answer": r["answer"]} for r in rows])
