"""The one data loader: training, the SFT stage and eval read problems through it.

Sources: the built-in synthetic problems, GSM8K (hub or local files), any hub
dataset (`source = "hub"`, id, config, split) and local JSONL/Parquet/CSV files.
A `FieldMap` says where the question and the gold answer are: a field, or a
template over fields (`"{Body} {Question}"`), or a list of chat messages used as
the prompt; the gold in a named format (`gsm8k` '####', last `\\boxed{}`, the
plain field, or one `number` read with its unit: `9 (apples)`, `145.0`). Extra
columns ride along to the reward functions as keyword arguments (TRL passes
dataset columns to rewards).

Every source ends as rows {"question", "answer"} (+ "messages" for chat rows,
+ the extra columns). Rows that can't be used (no gold, empty question, a line
that isn't JSON or isn't UTF-8, a prompt too long) are skipped and counted by
reason, never a crash; the first of each kind is kept with file, row and field
so an all-bad file is reported precisely, before the run directory exists. A CSV
is read strictly (a broken quote or a row with the wrong number of fields is
`bad_csv`), a gold that is a column name is `malformed`, and data whose
structural faults (`bad_csv`, `malformed`, `missing_field`) outnumber the rows
used is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import string
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_tui.engine.config import DataConfig, PresetError, PromptConfig
from grpo_tui.engine.data.synthetic import generate

GSM8K_HUB = ("openai/gsm8k", "main")
MATH500_HUB = ("HuggingFaceH4/MATH-500", None)
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
# Characters per token no real prompt exceeds: a question longer than this many characters per allowed token is
# dropped before anything tokenizes it (a 1,000,000-character question must not stall step 0).
MAX_CHARS_PER_TOKEN = 32
DEFAULT_PROMPT_TOKEN_CAP = 32768  # before the model's context is known
# Skip reasons that say the file's structure, not one row, is wrong: when they outnumber the rows used, the
# data is refused rather than trained on what is left.
MALFORMED = ("bad_csv", "malformed", "missing_field")


@dataclass
class DataReport:
    source: str
    origin: str
    rows_total: int = 0
    rows_used: int = 0
    skipped: Counter = field(default_factory=Counter)
    first_bad: dict[str, str] = field(default_factory=dict)  # reason -> "file row N: field 'x' ..."
    fields_seen: set[str] = field(default_factory=set)

    def skip(self, reason: str, where: str, count: int = 1) -> None:
        self.skipped[reason] += count
        self.first_bad.setdefault(reason, where)

    def as_event(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "origin": self.origin,
            "rows_total": self.rows_total,
            "rows_used": self.rows_used,
            "rows_skipped": sum(self.skipped.values()),
            "skipped": dict(self.skipped),
        }

    def explain(self) -> str:
        parts = [f"{n} {reason} (first: {self.first_bad.get(reason, '?')})" for reason, n in self.skipped.items()]
        return "; ".join(parts) or "none"


@dataclass
class FieldMap:
    """Where a record keeps its question and gold answer. 'auto' fields try the usual names in turn."""

    question_field: str = "question"
    answer_field: str = "answer"
    question_template: str | None = None
    gold_format: str = "auto"
    extra_fields: tuple[str, ...] = ()

    AUTO_QUESTION = ("question", "problem", "prompt", "messages")
    AUTO_ANSWER = ("answer", "solution")

    @classmethod
    def from_config(cls, cfg: DataConfig) -> FieldMap:
        if cfg.source == "gsm8k":
            return cls("question", "answer", None, "gsm8k", tuple(cfg.extra_fields))
        if cfg.source == "synthetic":  # built-in problems: their own field names, a plain number for gold
            return cls("question", "answer", None, "plain", tuple(cfg.extra_fields))
        return cls(
            cfg.question_field, cfg.answer_field, cfg.question_template, cfg.gold_format, tuple(cfg.extra_fields)
        )

    def template_fields(self) -> list[str]:
        if not self.question_template:
            return []
        return [name for _, name, _, _ in string.Formatter().parse(self.question_template) if name]


def check_template(template: str | None, where: str) -> None:
    if not template:
        return
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise PresetError(
            f"{where} question_template {template!r}: {e} (write fields as {{Field}}, a literal brace as {{{{ or }}}})."
        ) from None
    if not names or any(not n for n in names):
        raise PresetError(f'{where} question_template {template!r}: name each field, e.g. "{{Body}} {{Question}}".')


def check_files(cfg: DataConfig) -> None:
    """Cheap checks of the data settings, before anything is read."""
    for f in cfg.data_files:
        p = Path(f).expanduser()
        if not p.is_file():
            raise PresetError(f"[data] data_files: {f} does not exist (paths are relative to {Path.cwd()}).")
        if p.suffix not in FILE_SUFFIXES:
            raise PresetError(f"[data] data_files: {f}: use .jsonl, .json, .parquet or .csv files.")
    if cfg.source == "hub" and not cfg.dataset and not cfg.data_files:
        raise PresetError("[data] source = 'hub' needs dataset = \"owner/name\" (or data_files for a local copy).")
    check_template(cfg.question_template, "[data]")


# ------------------------------------------------------------------ reading records


def read_file(path: Path, report: DataReport | None = None) -> Iterator[dict[str, Any]]:
    """Records of a JSONL/JSON/Parquet/CSV file. Lines that are not UTF-8 or not a JSON object are counted, not
    fatal."""
    report = report if report is not None else DataReport("file", str(path))
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from pq.read_table(path).to_pylist()
            return
        if path.suffix == ".csv":
            yield from _csv_records(path, report)
            return
        if path.suffix == ".json" and path.read_bytes()[:1] == b"[":
            data = json.loads(path.read_text(encoding="utf-8"))
            yield from (r for r in data if isinstance(r, dict))
            return
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    report.rows_total += 1
                    report.skip("undecodable", f"{path} line {n}: not UTF-8")
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if isinstance(row, dict):
                    yield row
                else:
                    report.rows_total += 1
                    report.skip("bad_json", f"{path} line {n}: not a JSON object")
    except (OSError, ValueError) as e:  # unreadable file, a broken Parquet/JSON document
        raise PresetError(f"{path}: can't read it as {path.suffix[1:]}: {e}") from None


def _csv_records(path: Path, report: DataReport) -> Iterator[dict[str, Any]]:
    """A CSV's rows as records, read strictly: a row with a broken quote (an unbalanced quote swallows the lines
    after it into one field) or with more or fewer fields than the header is counted as `bad_csv`, not
    trained on garbled."""
    with open(path, encoding="utf-8", newline="", errors="replace") as f:
        reader = csv.reader(f, strict=True)
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                if header is None:
                    raise PresetError(
                        f"{path} line {start}: the header row is not valid CSV ({e}); fix its quotes."
                    ) from None
                report.rows_total += 1
                report.skip("bad_csv", f"{path} lines {start}-{reader.line_num}: {e} (an unbalanced quote?)")
                continue
            if header is None:
                header = values
                continue
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                report.rows_total += 1
                report.skip("bad_csv", f"{path} line {start}: {len(values)} fields, the header has {len(header)}")
                continue
            yield dict(zip(header, values))


def hub_records(dataset: str, config: str | None, split: str, where: str = "[data]") -> Iterable[dict[str, Any]]:
    """The real hub path (users have the hub even though CI does not); failures become a clear error."""
    try:
        from datasets import load_dataset

        return load_dataset(dataset, config, split=split) if config else load_dataset(dataset, split=split)
    except Exception as e:  # noqa: BLE001 - offline, unknown id/config/split: say what was asked and why it failed
        raise PresetError(
            f"{where} hub dataset {dataset!r}"
            + (f" (config {config!r})" if config else "")
            + f", split {split!r}: {type(e).__name__}: {str(e)[:300]}. Offline? Point data_files "
            "at a local copy (JSONL, Parquet or CSV)."
        ) from None


def records_for(cfg: DataConfig, report: DataReport) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, record) for every record of the configured source, where = 'file row N' for error messages."""
    if cfg.data_files:
        for f in cfg.data_files:
            p = Path(f).expanduser()
            for n, rec in enumerate(read_file(p, report), 1):
                yield f"{p} row {n}", rec
        return
    if cfg.source == "gsm8k":
        dataset, config = GSM8K_HUB
    elif cfg.source == "hub":
        dataset, config = cfg.dataset, cfg.dataset_config
    else:
        raise PresetError(f"[data] source = {cfg.source!r} needs data_files.")
    for n, rec in enumerate(hub_records(dataset, config, cfg.split), 1):
        yield f"hub {dataset} {cfg.split} row {n}", rec


# ------------------------------------------------------------------ mapping a record


def _is_messages(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    )


def _gold_kind(fmt: str, raw: str) -> str:
    if fmt != "auto":
        return fmt
    if "####" in raw:
        return "gsm8k"
    if "\\boxed" in raw:
        return "boxed"
    return "plain"


def map_record(rec: dict[str, Any], fm: FieldMap, where: str, report: DataReport) -> dict[str, Any] | None:
    """A row {"question", "answer"[, "messages"][, extras]} from a record, or None (skipped and counted)."""
    from grpo_tui.engine.rewards import gold_from_solution

    report.rows_total += 1
    report.fields_seen.update(rec)
    messages = None
    if fm.question_template:
        missing = [k for k in fm.template_fields() if rec.get(k) is None]
        if missing:
            report.skip("missing_field", f"{where}: no field {missing[0]!r} for question_template")
            return None
        question = fm.question_template.format(**{k: str(v).strip() for k, v in rec.items()})
    else:
        names = FieldMap.AUTO_QUESTION if fm.question_field == "auto" else (fm.question_field,)
        qf = next((k for k in names if rec.get(k) is not None), names[0])
        question = rec.get(qf)
        if _is_messages(question):
            messages = [{"role": m["role"], "content": str(m["content"])} for m in question]
            while messages and messages[-1]["role"] != "user":
                messages.pop()  # a whole conversation: the prompt is everything up to the last user turn
            question = messages[-1]["content"] if messages else None
        if qf not in rec:
            report.skip("missing_field", f"{where}: no field {qf!r}")
            return None
    if not isinstance(question, str) or not question.strip():
        report.skip("empty_question", f"{where}: empty question")
        return None
    if fm.answer_field == "auto":
        af = next((k for k in FieldMap.AUTO_ANSWER if rec.get(k) is not None and str(rec[k]).strip()), "answer")
        kind = "boxed" if af == "solution" and fm.gold_format == "auto" else None
    else:
        af, kind = fm.answer_field, None
    raw = rec.get(af)
    if raw is None or not str(raw).strip():
        report.skip("no_gold", f"{where}: field {af!r} " + ("missing" if af not in rec else "empty"))
        return None
    raw = str(raw)
    if raw.strip() in rec:
        # a gold that is a column's name: a header line read as a row, or columns shifted by a broken quote
        report.skip("malformed", f"{where}: field {af!r} = {raw.strip()[:60]!r} is a column name, not an answer")
        return None
    gold = gold_from_solution(raw, kind or _gold_kind(fm.gold_format, raw))
    if not gold:
        report.skip("no_gold", f"{where}: field {af!r} = {raw[:60]!r} has no {kind or fm.gold_format} gold answer")
        return None
    row: dict[str, Any] = {"question": question.strip(), "answer": gold}
    if messages:
        row["messages"] = messages
    for name in fm.extra_fields:
        row[name] = rec.get(name)
    return row


def rows_from_records(
    records: Iterable[tuple[str, dict[str, Any]]], fm: FieldMap, report: DataReport
) -> list[dict[str, Any]]:
    return [row for where, rec in records if (row := map_record(rec, fm, where, report)) is not None]


def _field_hint(fm: FieldMap, report: DataReport) -> str:
    wanted = fm.template_fields() or [fm.question_field, fm.answer_field]
    absent = [f for f in wanted if f != "auto" and f not in report.fields_seen]
    if report.fields_seen and absent:
        return (
            f" No row has field(s) {', '.join(map(repr, absent))}; the rows have: "
            f"{', '.join(sorted(report.fields_seen)[:20])}. Set [data] question_field / question_template / "
            "answer_field."
        )
    return " Check question_field/question_template/answer_field and gold_format."


def load_rows(cfg: DataConfig, seed: int, *, min_rows: int = 1) -> tuple[list[dict[str, Any]], DataReport]:
    """Training rows, shuffled and capped. Raises PresetError (before the run directory exists) when the data
    can't give at least min_rows usable rows (one generation batch of prompts)."""
    fm = FieldMap.from_config(cfg)
    # the balancing field rides along as a column until the rows are ordered, then goes unless asked for
    keep = fm.extra_fields
    if cfg.balance_by and cfg.balance_by not in keep:
        fm = dataclasses.replace(fm, extra_fields=keep + (cfg.balance_by,))
    if cfg.source == "synthetic":
        report = DataReport("synthetic", f"built-in, difficulty {cfg.synthetic_difficulty}")
        problems = generate(cfg.synthetic_size, cfg.synthetic_difficulty, seed)
        rows = rows_from_records(((f"synthetic {i}", p) for i, p in enumerate(problems)), fm, report)
    else:
        origin = (
            ", ".join(cfg.data_files)
            if cfg.data_files
            else (
                f"hub {GSM8K_HUB[0]} ({GSM8K_HUB[1]}), split {cfg.split}"
                if cfg.source == "gsm8k"
                else f"hub {cfg.dataset}"
                + (f" ({cfg.dataset_config})" if cfg.dataset_config else "")
                + f", split {cfg.split}"
            )
        )
        report = DataReport(cfg.source, origin)
        rows = rows_from_records(records_for(cfg, report), fm, report)
    rows = drop_long_questions(rows, cfg.max_prompt_tokens or DEFAULT_PROMPT_TOKEN_CAP, report)
    if cfg.balance_by and rows:
        rows = balance_rows(rows, cfg.balance_by, seed, report)
        if cfg.balance_by not in keep:
            for row in rows:
                del row[cfg.balance_by]
    elif cfg.shuffle:
        random.Random(seed).shuffle(rows)
    if cfg.max_examples:
        rows = rows[: cfg.max_examples]
    report.rows_used = len(rows)
    broken = sum(report.skipped[r] for r in MALFORMED)
    if broken > len(rows):
        raise PresetError(
            f"[data] most rows of {report.origin} look malformed ({broken} of {report.rows_total}: "
            f"{report.explain()}); {len(rows)} would be used. Fix the file (quotes, columns) or the "
            f"[data] field settings.{_field_hint(fm, report)}"
        )
    if not rows:
        raise PresetError(
            f"[data] no usable rows in {report.origin} (rows read: {report.rows_total}; skipped: "
            f"{report.explain()}).{_field_hint(fm, report)}"
        )
    if len(rows) < min_rows:
        raise PresetError(
            f"[data] {len(rows)} usable rows in {report.origin}, fewer than one generation batch "
            f"({min_rows} prompts; skipped: {report.explain()}). Add rows or make the batch smaller "
            "([train] per_device_train_batch_size / num_generations)."
        )
    return rows, report


def balance_rows(rows: list[dict[str, Any]], key: str, seed: int, report: DataReport) -> list[dict[str, Any]]:
    """The rows in rounds that take one row of each value of `key`, in a fresh random order each round.

    With one prompt a step, a shuffled list can hand the policy a run of one kind of problem (seed 2 of the
    cpu-demo drew seven additions in a row and learned to add whatever the question); in rounds, every run of
    K consecutive prompts holds each of the K kinds once. Each kind gives as many rows as the rarest has, so
    the mix is even; the rest are dropped and counted. Raises PresetError when no row has the field.
    """
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        value = row.get(key)
        groups.setdefault("" if value is None else str(value), []).append(row)
    if list(groups) == [""]:
        raise PresetError(
            f"[data] balance_by = {key!r}: no row has that field; the rows have: "
            f"{', '.join(sorted(report.fields_seen)[:20])}."
        )
    rng = random.Random(seed)
    kinds = sorted(groups)
    for kind in kinds:
        rng.shuffle(groups[kind])
    per_kind = min(len(g) for g in groups.values())
    out = []
    for i in range(per_kind):
        rng.shuffle(kinds)
        out.extend(groups[kind][i] for kind in kinds)
    dropped = len(rows) - len(out)
    if dropped:
        report.skip(
            "balance",
            f"balance_by = {key!r}: {len(groups)} kinds, {per_kind} rows each (the rarest kind's count)",
            dropped,
        )
    return out


def drop_long_questions(rows: list[dict[str, Any]], max_tokens: int, report: DataReport) -> list[dict[str, Any]]:
    """Drop rows whose question can't fit max_tokens whatever the tokenizer: cheap, before any tokenizing."""
    limit = max_tokens * MAX_CHARS_PER_TOKEN
    kept = []
    for i, row in enumerate(rows):
        if len(row["question"]) > limit:
            report.skip("prompt_too_long", f"row {i + 1}: {len(row['question']):,} characters")
        else:
            kept.append(row)
    return kept


def prompt_token_limit(max_prompt_tokens: int, model_config: Any, max_completion_length: int) -> int | None:
    """[data] max_prompt_tokens, or by default the model's context minus the completion length (None: unknown)."""
    if max_prompt_tokens > 0:
        return max_prompt_tokens
    context = getattr(model_config, "max_position_embeddings", None)
    if not isinstance(context, int) or context <= max_completion_length:
        return None
    return context - max_completion_length


def drop_long_prompts(
    rows: list[dict[str, Any]], tokenizer: Any, prompt: PromptConfig, limit: int | None, report: DataReport
) -> list[dict[str, Any]]:
    """Drop rows whose prompt (system prompt, one-shot turn and question, as tokenized) is over limit tokens."""
    if not limit:
        return rows
    from grpo_tui.engine.data.prompts import build_messages, system_prompt

    system = system_prompt(prompt.format, prompt.system_prompt)
    shot = prompt.format if prompt.one_shot else None
    try:  # the chat template's own tokens, counted once; the question's are counted per row
        overhead = len(
            tokenizer.apply_chat_template(build_messages("", system, shot), tokenize=True, add_generation_prompt=True)
        )
    except Exception:  # noqa: BLE001 - a tokenizer without a chat template: count the system prompt alone
        overhead = len(tokenizer(system).input_ids)
    kept = []
    for i, row in enumerate(rows):
        text = "\n".join(m["content"] for m in row["messages"]) if row.get("messages") else row["question"]
        n = overhead + len(tokenizer(text, add_special_tokens=False).input_ids)
        if n > limit:
            report.skip("prompt_too_long", f"row {i + 1}: {n} prompt tokens > {limit}")
        else:
            kept.append(row)
    report.rows_used = len(kept)
    return kept


def to_dataset(rows: list[dict[str, Any]], prompt: PromptConfig) -> Any:
    """A datasets.Dataset with a conversational 'prompt' column; 'answer' and extra columns reach rewards as kwargs."""
    from datasets import Dataset

    from grpo_tui.engine.data.prompts import build_messages, system_prompt

    system = system_prompt(prompt.format, prompt.system_prompt)
    shot = prompt.format if prompt.one_shot else None
    out = []
    for r in rows:
        messages = r.get("messages")
        if messages:
            # a chat row is the prompt as written; it gets the run's system prompt when it brings none
            msgs = messages if messages[0]["role"] == "system" else [{"role": "system", "content": system}, *messages]
        else:
            msgs = build_messages(r["question"], system, shot)
        out.append({"prompt": msgs, **{k: v for k, v in r.items() if k != "messages"}})
    return Dataset.from_list(out)
