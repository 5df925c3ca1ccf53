"""Evaluation datasets: the named benchmarks (local copies first, then the hub), local files, and
held-out synthetic problems that no training run can draw."""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_tui.engine.config import Config, PresetError
from grpo_tui.engine.data.loader import (
    GSM8K_HUB,
    MATH500_HUB,
    DataReport,
    FieldMap,
    check_template,
    hub_records,
    map_record,
    read_file,
)
from grpo_tui.engine.eval.errors import EvalError
from grpo_tui.engine.rewards import parse_number

# The synthetic problems a model trains on come from random.Random(f"synthetic-{difficulty}-{seed}") with the
# preset's integer seed; a string seed gives a stream no training run can draw, and questions that happen to
# coincide with the training set are removed as well.
HELDOUT_SEED = "heldout"
# Where local copies of the named datasets are looked for before the hub: <dir>/gsm8k/<split>.jsonl,
# <dir>/math500/<split>.jsonl.
DATA_DIRS_ENV = "GRPO_TUI_DATA"


@dataclass
class EvalItem:
    id: str
    question: str
    gold: str


@dataclass
class EvalData:
    name: str  # as given on the command line
    origin: str  # file path or hub id
    items: list[EvalItem]
    math_style: bool  # answers are LaTeX (\\boxed{}) rather than plain numbers
    skipped: int = 0
    unparsed: int = 0  # golds that are neither a number nor LaTeX: only an exact string match scores them

    def gold_warning(self) -> str | None:
        """A loud line when most golds can't be compared as numbers or math (a wrong field or gold format)."""
        if not self.items or self.unparsed * 2 <= len(self.items):
            return None
        example = next((i.gold for i in self.items if parse_number(i.gold) is None and "\\" not in i.gold), "")
        return (
            f"WARNING: {self.unparsed} of {len(self.items)} gold answers are not a number or a LaTeX expression "
            f"(e.g. {example[:60]!r}); answers to them score only on an exact text match. Check --answer-field "
            "and --gold-format (gsm8k, boxed, plain, number)."
        )


def _data_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get(DATA_DIRS_ENV, "").split(os.pathsep) if p]
    return dirs + [Path("data"), Path("..") / "shared" / "data"]


def local_copy(name: str, split: str) -> Path | None:
    for d in _data_dirs():
        for ext in ("jsonl", "parquet"):
            p = d / name / f"{split}.{ext}"
            if p.is_file():
                return p
    return None


def items_from_records(
    records: Iterable[dict[str, Any]], prefix: str, fields: FieldMap | None = None
) -> tuple[list[EvalItem], int, bool]:
    """Items through the data loader's field mapping; by default the question from question/problem/prompt and the
    gold from answer (GSM8K '####', MATH plain) or the solution's last \\boxed{}."""
    fm = fields or FieldMap("auto", "auto")
    report = DataReport("eval", prefix)
    items, boxed = [], 0
    for i, rec in enumerate(records):
        row = map_record(rec, fm, f"{prefix} row {i + 1}", report)
        if row is None:
            continue
        gold = row["answer"]
        if "\\" in gold or parse_number(gold) is None:
            boxed += 1
        items.append(EvalItem(str(rec.get("unique_id") or rec.get("id") or f"{prefix}-{i}"), row["question"], gold))
    # MATH-style when answers are mostly not plain numbers (MATH-500: ~60% LaTeX)
    return items, sum(report.skipped.values()), bool(items) and boxed / len(items) > 0.2


def _unparsed(items: list[EvalItem]) -> int:
    return sum(1 for i in items if parse_number(i.gold) is None and "\\" not in i.gold)


def heldout_synthetic(n: int, difficulty: int, train_seed: int | None = None, train_size: int = 0) -> list[EvalItem]:
    """n built-in problems from a seed no training run uses, minus any question in the given training set."""
    from grpo_tui.engine.data.synthetic import generate

    train = (
        {p["question"] for p in generate(train_size, difficulty, train_seed)}
        if train_seed is not None and train_size
        else set()
    )
    out: list[EvalItem] = []
    want = n
    while len(out) < n:
        problems = generate(want + len(train) // 10 + 16, difficulty, HELDOUT_SEED)  # type: ignore[arg-type]
        out = [
            EvalItem(f"synthetic-{difficulty}-{i}", p["question"], p["answer"])
            for i, p in enumerate(problems)
            if p["question"] not in train
        ][:n]
        want *= 2
    return out


def load_eval_data(
    dataset: str,
    split: str = "test",
    limit: int = 0,
    cfg: Config | None = None,
    difficulty: int | None = None,
    shuffle_seed: int | None = None,
    fields: FieldMap | None = None,
    dataset_config: str | None = None,
) -> EvalData:
    """The items to evaluate on. Named datasets use a local copy when there is one (see _data_dirs), else the hub;
    an 'owner/name' that is not a local path is a hub dataset. `fields` maps questions and golds (default: auto)."""
    if dataset == "synthetic":
        d = difficulty or (cfg.data.synthetic_difficulty if cfg else 1)
        train_seed = cfg.train.seed if cfg and cfg.data.source == "synthetic" else None
        train_size = cfg.data.synthetic_size if cfg and cfg.data.source == "synthetic" else 0
        items = heldout_synthetic(limit or 500, d, train_seed, train_size)
        return EvalData("synthetic", f"built-in, difficulty {d}, held-out seed", items, False)
    if fields is not None:
        try:
            check_template(fields.question_template, "--question-template:")
        except PresetError as e:
            raise EvalError(str(e)) from None
    path = Path(dataset).expanduser()
    hub_id = {"gsm8k": GSM8K_HUB, "math500": MATH500_HUB}.get(dataset)
    if (
        hub_id is None
        and "/" in dataset
        and not path.exists()
        and path.suffix not in (".jsonl", ".json", ".parquet", ".csv")
    ):
        hub_id = (dataset, dataset_config)
    if hub_id is not None and not path.exists():
        local = local_copy(dataset, split) if dataset in ("gsm8k", "math500") else None
        if local is not None:
            path = local
        else:
            try:
                ds = hub_records(hub_id[0], hub_id[1], split, where="--dataset")
            except PresetError as e:
                raise EvalError(
                    f"{e} (local copies of gsm8k/math500 are looked for in "
                    f"{', '.join(map(str, _data_dirs()))}; set {DATA_DIRS_ENV})"
                ) from None
            origin = f"hub {hub_id[0]}" + (f" ({hub_id[1]})" if hub_id[1] else "") + f", split {split}"
            items, skipped, math_style = items_from_records(ds, dataset.replace("/", "_"), fields)
            return _finish(
                EvalData(dataset, origin, items, math_style or dataset == "math500", skipped, _unparsed(items)),
                limit,
                shuffle_seed,
            )
    if not path.is_file():
        raise EvalError(
            f"--dataset {dataset}: not 'gsm8k', 'math500', 'synthetic', a hub id (owner/name) or an "
            "existing .jsonl/.json/.parquet/.csv file."
        )
    report = DataReport("eval", str(path))
    try:
        items, skipped, math_style = items_from_records(read_file(path, report), path.stem, fields)
    except PresetError as e:
        raise EvalError(str(e)) from None
    skipped += sum(report.skipped.values())
    if not items:
        raise EvalError(
            f"--dataset {path}: no usable rows ({skipped} without a question or a gold answer); "
            "rows need question/problem and answer (or a solution with \\boxed{}), or name the fields "
            "with --question-field/--question-template and --answer-field."
        )
    named = dataset if dataset in ("gsm8k", "math500") else str(path)
    return _finish(
        EvalData(named, str(path), items, math_style or "math" in path.parent.name.lower(), skipped, _unparsed(items)),
        limit,
        shuffle_seed,
    )


def _finish(data: EvalData, limit: int, shuffle_seed: int | None) -> EvalData:
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(data.items)
    if limit:
        data.items = data.items[:limit]
    return data


def gsm8k_docs(dataset: str, split: str, what: str) -> tuple[list[dict[str, Any]], str]:
    """Raw GSM8K-format records (question, answer with '####') of a named split or a file, for lm-eval's protocol."""
    path = Path(dataset).expanduser()
    if dataset == "gsm8k" and not path.exists():
        local = local_copy("gsm8k", split)
        if local is None:
            try:
                return [
                    dict(r) for r in hub_records(*GSM8K_HUB, split=split, where=what)
                ], f"hub {GSM8K_HUB[0]} {split}"
            except PresetError as e:
                raise EvalError(f"{e} (or set {DATA_DIRS_ENV} to a folder with gsm8k/{split}.jsonl)") from None
        path = local
    if not path.is_file():
        raise EvalError(f"{what} {dataset}: not 'gsm8k' or an existing GSM8K-format file.")
    try:
        docs = [r for r in read_file(path) if isinstance(r.get("question"), str) and "####" in str(r.get("answer", ""))]
    except PresetError as e:
        raise EvalError(str(e)) from None
    if not docs:
        raise EvalError(f"{what} {path}: no GSM8K-format rows (question, answer ending in '#### N').")
    return docs, str(path)
