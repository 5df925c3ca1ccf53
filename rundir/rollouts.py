"""Saved rollouts: every group GRPO scored, append-only, crash-safe and fast to browse.

Two files hold them (docs/rollouts.md has the full story):

- ``rollouts.jsonl``: the record. One JSON line per group (G completions of one
  prompt), appended and flushed once per generation batch. It is the only file
  that must survive; everything else can be rebuilt from it. Readers skip a
  half-written last line (the engine was killed mid-write) and count it.
- ``rollouts/seg-<start>-<end>.arrow``: a columnar copy of the byte range
  [start, end) of rollouts.jsonl, written every ``segment_steps`` steps as an
  Arrow IPC file (zstd), to a temporary name and then renamed, so a segment is
  either whole or absent. Opening a 128,000-completion run reads ~40 segments
  and parses only the JSONL lines after the last segment, instead of parsing
  130 MB of JSON. A missing, damaged or stale segment just means that byte range
  is parsed from the JSONL.

Readers build a ``Rollouts`` snapshot: numpy columns for the numbers and Arrow
string arrays for the text, so filters and searches are vectorised. A group
re-recorded after a resume (same step and group index) replaces the earlier one.

Rollout files are only ever parsed as JSON or read as Arrow arrays of plain
types: never executed, evaluated or unpickled.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from rundir.layout import SCHEMA_VERSION, open_private

SEGMENT_FORMAT = 1  # version of the Arrow segment layout (schema metadata "format")
SEGMENT_STEPS = 50  # seal a segment once the unsealed groups span this many steps
SEGMENT_BYTES = 32 << 20  # ... or this many bytes of JSONL, whichever comes first
SEGMENT_DIR = "rollouts"
_SEGMENT_NAME = re.compile(r"seg-(\d{12})-(\d{12})\.arrow")
_META_KEY = b"grpo_tui.rollouts"
_READ_BLOCK = 16 << 20  # JSONL is parsed in blocks so a huge plain file never sits in memory as dicts

GROUP_KEYS = ("v", "step", "group", "prompt", "gold", "completions")
COMPLETION_KEYS = ("text", "extracted", "correct", "rewards", "total", "advantage", "tokens", "truncated")


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return round(x, 6) if math.isfinite(x) else None


def _paths(path_or_rundir: Path | str) -> tuple[Path, Path]:
    """(rollouts.jsonl, segment directory) for a run directory or a rollouts.jsonl path."""
    p = Path(path_or_rundir)
    jsonl = p if p.suffix == ".jsonl" or p.is_file() else p / "rollouts.jsonl"
    return jsonl, jsonl.parent / SEGMENT_DIR


# ============================================================================ writer


class RolloutWriter:
    """The engine's writer: one JSON line per group, plus an Arrow segment every few steps.

    `flush()` is called once per generation batch; it makes the batch's lines
    durable in rollouts.jsonl and, when enough unsealed groups have piled up,
    seals them into a segment. Sealing never fails training: on any error the
    range simply stays JSONL-only.
    """

    def __init__(self, path_or_rundir: Path | str, *, segment_steps: int = SEGMENT_STEPS,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.path, self.segment_dir = _paths(path_or_rundir)
        self.segment_steps, self.segment_bytes = segment_steps, segment_bytes
        self.segments_written = 0
        self.seal_errors: list[str] = []
        # never through a link, owner-only when created (rundir.layout.open_private)
        self._f = os.fdopen(open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "rollout log"), "ab")
        self._pos = self._f.seek(0, os.SEEK_END)
        if self._pos:
            with open(self.path, "rb") as f:
                f.seek(self._pos - 1)
                if f.read(1) != b"\n":
                    # a killed engine left half a line: end it so our first record starts on its own line
                    # (readers then skip that one damaged line instead of losing our record too)
                    self._f.write(b"\n")
                    self._f.flush()
                    self._pos += 1
        # Groups written since the last segment (a previous engine process's unsealed tail included),
        # kept so the next segment can be built without reading the file back.
        self._seg_start = _sealed_end(self.segment_dir, self._pos)
        self._buffer: list[dict[str, Any]] = []
        if self._pos - self._seg_start > 2 * segment_bytes:
            # an old run written before segments: don't hold it all in the engine's memory;
            # that range stays JSONL-only (readers parse holes between segments)
            self._seg_start = self._pos
        elif self._seg_start < self._pos:
            self._buffer = _parse_range(self.path, self._seg_start, self._pos, ReadReport())[0]
        self._buffer_steps = {r["step"] for r in self._buffer if isinstance(r.get("step"), int)}

    def write_group(self, step: int, group: int, prompt: str, gold: str,
                    completions: list[dict[str, Any]], **extra: Any) -> None:
        # "v", "step", "group" lead every line: the dashboard indexes long files by that prefix.
        record = {"v": SCHEMA_VERSION, "step": step, "group": group, "prompt": prompt, "gold": gold,
                  **extra, "completions": [
                      {**c, "rewards": {k: _num(v) for k, v in c["rewards"].items()},
                       "total": _num(c["total"]), "advantage": _num(c["advantage"])}
                      for c in completions]}
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        self._f.write(line)
        self._pos += len(line)
        self._buffer.append(record)
        self._buffer_steps.add(step)

    def flush(self) -> None:
        self._f.flush()
        if self._buffer and (len(self._buffer_steps) >= self.segment_steps
                             or self._pos - self._seg_start >= self.segment_bytes):
            self.seal()

    def seal(self) -> Path | None:
        """Write the unsealed groups as a segment now (also done by flush and close)."""
        if not self._buffer:
            return None
        start, end, records = self._seg_start, self._pos, self._buffer
        self._buffer, self._buffer_steps, self._seg_start = [], set(), end
        try:
            self._f.flush()
            os.fsync(self._f.fileno())  # a segment must never describe bytes the JSONL lost
            chunk = Chunk.from_records(records, ReadReport())
            path = write_segment(self.segment_dir, start, end, chunk)
        except Exception as e:  # noqa: BLE001 - segments are an index; the JSONL already holds the data
            msg = f"rollout segment {start}-{end} not written ({type(e).__name__}: {e}); browsing reads the JSONL"
            self.seal_errors.append(msg)
            print(msg, file=sys.stderr, flush=True)
            return None
        self.segments_written += 1
        return path

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        self.seal()
        self._f.close()


def _sealed_end(segment_dir: Path, jsonl_size: int) -> int:
    """Where the last segment that fits the JSONL ends (0 when there is none)."""
    return max((end for _, end, _ in list_segments(segment_dir) if end <= jsonl_size), default=0)


def list_segments(segment_dir: Path) -> list[tuple[int, int, Path]]:
    """(start, end, path) of the segment files, sorted by start."""
    try:
        names = os.listdir(segment_dir)
    except OSError:
        return []
    out = []
    for name in names:
        m = _SEGMENT_NAME.fullmatch(name)
        if m:
            out.append((int(m.group(1)), int(m.group(2)), segment_dir / name))
    return sorted(out)


# ============================================================================ columns


def _int(x: Any, default: int | None = None) -> int | None:
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    if isinstance(x, float) and math.isfinite(x):
        return int(x)
    return default


def _float(x: Any) -> float:
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return float(x)
    return math.nan


def _str(x: Any) -> str | None:
    if x is None or isinstance(x, str):
        return x
    return json.dumps(x, ensure_ascii=False)


# Arrow <-> numpy by buffers. pyarrow's own conversions (to_numpy, pa.array on Python objects,
# scalars) first import pandas, ~0.2 s of a browser's 1 s budget, so the read path avoids them.

def _bits(buf, offset: int, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")[offset:offset + n].astype(bool)


def _valid(arr) -> np.ndarray | None:
    """Where arr has a value (None when it has no nulls)."""
    if not arr.null_count:
        return None
    buf = arr.buffers()[0]
    return _bits(buf, arr.offset, len(arr)) if buf is not None else np.zeros(len(arr), dtype=bool)


_NUMPY = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8,
          "uint16": np.uint16, "uint32": np.uint32, "uint64": np.uint64, "float": np.float32,
          "double": np.float64, "halffloat": np.float16}


def _numbers(arr, dtype: Any, fill: Any) -> np.ndarray:
    """A numeric or boolean Arrow array as numpy `dtype`, nulls -> fill."""
    import pyarrow as pa

    n = len(arr)
    if isinstance(arr, pa.ChunkedArray):
        parts = [_numbers(c, dtype, fill) for c in arr.chunks]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    if n == 0:
        return np.zeros(0, dtype=dtype)
    if arr.null_count == n:
        return np.full(n, fill, dtype=dtype)
    if pa.types.is_boolean(arr.type):
        vals = _bits(arr.buffers()[1], arr.offset, n)
    else:
        np_type = _NUMPY.get(str(arr.type))
        if np_type is None:
            raise ValueError(f"numeric column expected, got {arr.type}")
        vals = np.frombuffer(arr.buffers()[1], dtype=np_type, count=n, offset=arr.offset * np.dtype(np_type).itemsize)
    out = vals.astype(dtype)  # a copy: never keep a view into a file's buffers
    valid = _valid(arr)
    if valid is not None:
        out[~valid] = fill
    return out


def _string_array(values: list[str | None]):
    """pa.string() array from Python strings, built from buffers."""
    import pyarrow as pa

    n = len(values)
    enc = [v.encode("utf-8", "surrogatepass") if v is not None else b"" for v in values]
    offsets = np.zeros(n + 1, dtype=np.int64)
    if n:
        np.cumsum(np.fromiter(map(len, enc), dtype=np.int64, count=n), out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("a chunk holds over 2 GiB of text")
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    nulls = int(n - valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes()) if nulls else None
    return pa.Array.from_buffers(pa.string(), n, [bitmap, pa.py_buffer(offsets.astype(np.int32).tobytes()),
                                                  pa.py_buffer(b"".join(enc))], null_count=nulls)


@dataclass
class Chunk:
    """A batch of groups in columns. Group-level arrays have one row per group; completion-level
    arrays one row per completion, groups' completions contiguous and in order (`n` per group)."""

    v: np.ndarray  # int64 [groups]
    step: np.ndarray  # int64 [groups]
    group: np.ndarray  # int64 [groups]
    n: np.ndarray  # int64 [groups]: completions in the group
    prompt: Any  # pa.StringArray [groups]
    gold: Any  # pa.StringArray [groups]
    extra: Any  # pa.StringArray [groups]: JSON object of unknown group fields, or null
    text: Any  # pa.StringArray [completions]
    extracted: Any  # pa.StringArray [completions], null = no answer found
    correct: np.ndarray  # bool [completions]
    truncated: np.ndarray  # bool [completions]
    total: np.ndarray  # float64 [completions], NaN = none
    advantage: np.ndarray  # float64 [completions]
    tokens: np.ndarray  # int64 [completions]
    rewards: dict[str, np.ndarray]  # name -> float64 [completions], NaN = none/absent
    cextra: Any  # pa.StringArray [completions]: JSON object of unknown completion fields, or null

    @property
    def groups(self) -> int:
        return len(self.step)

    @property
    def completions(self) -> int:
        return len(self.correct)

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], report: "ReadReport") -> "Chunk":
        """Columns from JSONL group records; malformed records are counted in report.invalid."""
        vs, steps, groups, ns, prompts, golds, extras = [], [], [], [], [], [], []
        texts, exs, cor, tru, tot, adv, tok, cext = [], [], [], [], [], [], [], []
        rewards: dict[str, list[float]] = {}
        nc = 0
        for r in records:
            step = _int(r.get("step"))
            comps = r.get("completions")
            if step is None or not isinstance(comps, list):
                report.invalid += 1
                continue
            v = _int(r.get("v"), 1)
            if v > SCHEMA_VERSION:
                report.newer += 1
                report.newest = max(report.newest, v)
            vs.append(v)
            steps.append(step)
            groups.append(_int(r.get("group"), -1))
            prompts.append(_str(r.get("prompt")) or "")
            golds.append(_str(r.get("gold")) or "")
            other = {k: val for k, val in r.items() if k not in GROUP_KEYS}
            extras.append(json.dumps(other, ensure_ascii=False) if other else None)
            ns.append(len(comps))
            for c in comps:
                if not isinstance(c, dict):
                    c = {}
                texts.append(_str(c.get("text")) or "")
                exs.append(_str(c.get("extracted")))
                cor.append(c.get("correct") is True)
                tru.append(c.get("truncated") is True)
                tot.append(_float(c.get("total")))
                adv.append(_float(c.get("advantage")))
                tok.append(_int(c.get("tokens"), 0))
                rw = c.get("rewards")
                if isinstance(rw, dict):
                    for k, val in rw.items():
                        col = rewards.get(k)
                        if col is None:
                            col = rewards[k] = [math.nan] * nc
                        col.append(_float(val))
                nc += 1
                for col in rewards.values():
                    if len(col) < nc:
                        col.append(math.nan)
                other = {k: val for k, val in c.items() if k not in COMPLETION_KEYS}
                cext.append(json.dumps(other, ensure_ascii=False) if other else None)
        i64 = lambda xs: np.asarray(xs, dtype=np.int64)  # noqa: E731
        return cls(
            v=i64(vs), step=i64(steps), group=i64(groups), n=i64(ns),
            prompt=_string_array(prompts), gold=_string_array(golds),
            extra=_string_array(extras), text=_string_array(texts),
            extracted=_string_array(exs), correct=np.asarray(cor, dtype=bool),
            truncated=np.asarray(tru, dtype=bool), total=np.asarray(tot, dtype=np.float64),
            advantage=np.asarray(adv, dtype=np.float64), tokens=i64(tok),
            rewards={k: np.asarray(col, dtype=np.float64) for k, col in rewards.items()},
            cextra=_string_array(cext))

    # ---------------------------------------------------------------- Arrow
    def to_table(self, meta: dict[str, Any]):
        import pyarrow as pa

        nc, names = self.completions, list(self.rewards)
        offsets = np.zeros(self.groups + 1, dtype=np.int32)
        np.cumsum(self.n, out=offsets[1:])
        vals = (np.stack([self.rewards[k] for k in names], axis=1).reshape(-1) if names
                else np.zeros(0, dtype=np.float64))
        rewards = pa.MapArray.from_arrays(
            pa.array(np.arange(nc + 1, dtype=np.int32) * len(names)),
            pa.array(names * nc, pa.string()), pa.array(vals, pa.float64(), mask=np.isnan(vals)))
        nan = lambda a: pa.array(a, mask=np.isnan(a))  # noqa: E731
        comps = pa.StructArray.from_arrays(
            [self.text, self.extracted, pa.array(self.correct), rewards, nan(self.total), nan(self.advantage),
             pa.array(self.tokens, pa.int64()), pa.array(self.truncated), self.cextra],
            names=["text", "extracted", "correct", "rewards", "total", "advantage", "tokens", "truncated",
                   "extra"])
        table = pa.table({
            "v": pa.array(self.v, pa.int64()), "step": pa.array(self.step, pa.int64()),
            "group": pa.array(self.group, pa.int64()), "prompt": self.prompt, "gold": self.gold,
            "extra": self.extra, "completions": pa.ListArray.from_arrays(pa.array(offsets), comps)})
        return table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})

    @classmethod
    def from_table(cls, table) -> "Chunk":
        """Columns of a segment; raises ValueError when a needed column is missing or mistyped."""
        import pyarrow as pa
        import pyarrow.compute as pc

        def col(name: str, required: bool = True):
            if name not in table.column_names:
                if required:
                    raise ValueError(f"no column {name!r}")
                return None
            column = table.column(name)
            return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()

        def ints(a, default: int):
            if a is None or not pa.types.is_integer(a.type):
                raise ValueError("integer column expected")
            return _numbers(a, np.int64, default)

        def strings(a, n: int):
            if a is None:
                return pa.nulls(n, pa.string())
            if not pa.types.is_string(a.type):
                raise ValueError(f"string column expected, got {a.type}")
            return a

        def floats(a, n: int):
            if a is None:
                return np.full(n, np.nan)
            if not (pa.types.is_floating(a.type) or pa.types.is_integer(a.type)):
                raise ValueError(f"numeric column expected, got {a.type}")
            return _numbers(a, np.float64, np.nan)

        def bools(a, n: int):
            if a is None:
                return np.zeros(n, dtype=bool)
            if not pa.types.is_boolean(a.type):
                raise ValueError(f"boolean column expected, got {a.type}")
            return _numbers(a, bool, False)

        g = table.num_rows
        step = ints(col("step"), 0)
        lists = col("completions")
        if not (pa.types.is_list(lists.type) and pa.types.is_struct(lists.type.value_type)):
            raise ValueError("completions must be list<struct>")
        n = _numbers(pc.list_value_length(lists), np.int64, 0)
        flat = pc.list_flatten(lists)
        nc = len(flat)
        fields = {flat.type.field(i).name for i in range(flat.type.num_fields)}

        def field(name: str):
            return pc.struct_field(flat, name) if name in fields else None

        rewards: dict[str, np.ndarray] = {}
        rmap = field("rewards")
        if rmap is not None and pa.types.is_map(rmap.type) and nc:
            as_list = pa.ListArray.from_arrays(rmap.offsets, rmap.values)  # offsets are absolute into values
            entries = pc.list_flatten(as_list)
            parent = _numbers(pc.list_parent_indices(as_list), np.int64, 0)
            keys = pc.dictionary_encode(pc.struct_field(entries, "key"))
            key_ids = _numbers(keys.indices, np.int64, -1)
            vals = floats(pc.struct_field(entries, "value"), len(entries))
            for k, name in enumerate(keys.dictionary.to_pylist()):
                sel = key_ids == k
                arr = np.full(nc, np.nan)
                arr[parent[sel]] = vals[sel]
                rewards[name] = arr
        vcol = col("v", False)
        tokens = field("tokens")
        return cls(
            v=ints(vcol, 1) if vcol is not None else np.ones(g, dtype=np.int64), step=step,
            group=ints(col("group"), -1), n=n,
            prompt=strings(col("prompt", False), g), gold=strings(col("gold", False), g),
            extra=strings(col("extra", False), g),
            text=strings(field("text"), nc), extracted=strings(field("extracted"), nc),
            correct=bools(field("correct"), nc), truncated=bools(field("truncated"), nc),
            total=floats(field("total"), nc), advantage=floats(field("advantage"), nc),
            tokens=ints(tokens, 0) if tokens is not None else np.zeros(nc, dtype=np.int64),
            rewards=rewards, cextra=strings(field("extra"), nc))

    def records(self) -> list[dict[str, Any]]:
        """The groups as JSONL-shaped dicts (rewards NaN -> None)."""
        texts, exs, cext = self.text.to_pylist(), self.extracted.to_pylist(), self.cextra.to_pylist()
        prompts, golds, extras = self.prompt.to_pylist(), self.gold.to_pylist(), self.extra.to_pylist()
        out, c = [], 0
        for i in range(self.groups):
            comps = []
            for _ in range(int(self.n[i])):
                comps.append({"text": texts[c], "extracted": exs[c], "correct": bool(self.correct[c]),
                              "rewards": {k: _none(a[c]) for k, a in self.rewards.items()},
                              "total": _none(self.total[c]), "advantage": _none(self.advantage[c]),
                              "tokens": int(self.tokens[c]), "truncated": bool(self.truncated[c]),
                              **(json.loads(cext[c]) if cext[c] else {})})
                c += 1
            out.append({"v": int(self.v[i]), "step": int(self.step[i]), "group": int(self.group[i]),
                        "prompt": prompts[i], "gold": golds[i], **(json.loads(extras[i]) if extras[i] else {}),
                        "completions": comps})
        return out


def _none(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def write_segment(segment_dir: Path, start: int, end: int, chunk: Chunk) -> Path:
    """Atomically write rollouts.jsonl bytes [start, end) as columns: temporary file, fsync, rename."""
    import pyarrow as pa

    segment_dir.mkdir(exist_ok=True)
    meta = {"format": SEGMENT_FORMAT, "start": start, "end": end, "groups": chunk.groups,
            "completions": chunk.completions, "first_step": int(chunk.step.min()) if chunk.groups else None,
            "last_step": int(chunk.step.max()) if chunk.groups else None, "written": round(time.time(), 3)}
    table = chunk.to_table(meta)
    path = segment_dir / f"seg-{start:012d}-{end:012d}.arrow"
    tmp = segment_dir / f".{path.name}.tmp"
    with open(tmp, "wb") as f:
        with pa.ipc.new_file(f, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
            w.write_table(table)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_segment(path: Path) -> Chunk:
    import pyarrow as pa

    with pa.OSFile(str(path)) as src:
        reader = pa.ipc.open_file(src)
        meta = json.loads((reader.schema.metadata or {}).get(_META_KEY, b"{}"))
        fmt = meta.get("format", SEGMENT_FORMAT)
        table = reader.read_all()
    chunk = Chunk.from_table(table)
    chunk.format = fmt  # type: ignore[attr-defined]
    return chunk


# ============================================================================ reading


@dataclass
class ReadReport:
    """What was read and what was skipped, for the user (`messages`) and for tests."""

    segments: int = 0  # segments read
    segment_problems: list[str] = field(default_factory=list)  # unreadable/stale segments (re-read from JSONL)
    jsonl_bytes: int = 0  # bytes of JSONL parsed
    skipped: int = 0  # complete lines that were not JSON objects
    invalid: int = 0  # JSON objects without a step or a completions list
    newer: int = 0  # records of a newer schema version (read for the fields this reader knows)
    newest: int = 0
    partial: int = 0  # bytes of an unfinished last line (being written, or the engine died mid-write)
    missing: bool = False  # no rollouts.jsonl
    replaced: int = 0  # groups recorded again later (a resumed run redoes steps); the latest is shown

    def messages(self) -> list[str]:
        out = []
        if self.missing:
            out.append("no rollouts.jsonl in this run directory" + (" (showing sealed segments only)"
                                                                    if self.segments else ""))
        if self.skipped:
            out.append(f"{self.skipped} damaged line(s) in rollouts.jsonl skipped")
        if self.invalid:
            out.append(f"{self.invalid} record(s) without step/completions skipped")
        if self.partial:
            out.append(f"unfinished last line ({self.partial} bytes) skipped: still being written, "
                       "or the engine was killed mid-write")
        if self.newer:
            out.append(f"{self.newer} record(s) from a newer schema (v{self.newest}; this reader knows "
                       f"v{SCHEMA_VERSION}): read the fields it knows")
        out.extend(self.segment_problems)
        if self.replaced:
            out.append(f"{self.replaced} group(s) were recorded again after a resume; showing the latest")
        return out


def _parse_range(path: Path, start: int, end: int | None, report: ReadReport,
                 block: int = 1 << 62) -> tuple[list[dict[str, Any]], int]:
    """Complete JSON lines of bytes [start, end): (records, end of the last complete line)."""
    from rundir.events import parse_lines

    want = (end - start) if end is not None else block
    while True:
        try:
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(min(block, want))
        except OSError:
            return [], start
        if b"\n" in data or len(data) < block or block >= want:
            break
        block *= 2  # one line longer than the block: read more
    records, used, skipped = parse_lines(data)
    report.skipped += skipped
    report.jsonl_bytes += used
    return records, start + used


class RolloutReader:
    """Reads a run's rollouts as Chunks: segments at first, then new JSONL lines as they are appended.

    Not thread-safe; the browser calls it from one worker at a time. `read_new` does
    file I/O only and touches nothing but this reader.
    """

    def __init__(self, path_or_rundir: Path | str) -> None:
        self.path, self.segment_dir = _paths(path_or_rundir)
        self.pos = 0  # JSONL bytes consumed
        self.report = ReadReport()
        self._opened = False

    def read_new(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        try:
            size = os.path.getsize(self.path)
            self.report.missing = False
        except OSError:
            size = None
            self.report.missing = True
        if not self._opened:
            self._opened = True
            chunks += self._read_segments(size)
        if size is None:
            return chunks
        if size < self.pos:  # the file was replaced by something shorter: start over from its beginning
            self.pos = 0
        while self.pos < size:
            records, new_pos = _parse_range(self.path, self.pos, size, self.report, _READ_BLOCK)
            if new_pos == self.pos:
                break  # only an unfinished line left
            self.pos = new_pos
            if records:
                chunks.append(Chunk.from_records(records, self.report))
        self.report.partial = max(0, size - self.pos)
        return chunks

    def _read_segments(self, size: int | None) -> list[Chunk]:
        chunks: list[Chunk] = []
        pos = 0
        for start, end, path in list_segments(self.segment_dir):
            if size is not None and end > size:
                self.report.segment_problems.append(f"{path.name}: describes bytes past the end of "
                                                    "rollouts.jsonl; ignored")
                continue
            if start < pos:
                continue  # overlaps what is already covered
            if start > pos and size is not None:
                # a hole (a segment that failed to write): parse those lines from the JSONL
                while pos < start:
                    records, new_pos = _parse_range(self.path, pos, start, self.report, _READ_BLOCK)
                    if new_pos == pos:
                        break
                    pos = new_pos
                    if records:
                        chunks.append(Chunk.from_records(records, self.report))
                pos = start
            try:
                chunk = read_segment(path)
            except Exception as e:  # noqa: BLE001 - a bad segment must not stop the browser
                self.report.segment_problems.append(f"{path.name}: unreadable ({type(e).__name__}: {e}); "
                                                    "read from rollouts.jsonl instead")
                continue
            if getattr(chunk, "format", SEGMENT_FORMAT) > SEGMENT_FORMAT:
                self.report.segment_problems.append(f"{path.name}: newer segment format; read the columns "
                                                    "this reader knows")
            chunks.append(chunk)
            self.report.segments += 1
            pos = end
        self.pos = pos if size is not None else 0
        return chunks


def read_rollouts(path: Path | str) -> tuple[list[dict[str, Any]], int]:
    """(groups as dicts, lines skipped), in file order, from rollouts.jsonl alone.

    Skips a half-written or corrupt line instead of failing. For large runs prefer
    `open_rollouts` (columnar, uses the segments).
    """
    from rundir.events import parse_lines

    path = _paths(path)[0]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    if data and not data.endswith(b"\n"):
        data += b"\n"  # a finished file's last line may lack its newline; parse it if it is whole JSON
    groups, _, skipped = parse_lines(data)
    return groups, skipped


def open_rollouts(path_or_rundir: Path | str) -> "Rollouts":
    """All rollouts of a run as a columnar snapshot (report: what was skipped)."""
    reader = RolloutReader(path_or_rundir)
    rollouts = Rollouts(reader.read_new(), reader.report)
    return rollouts


# ============================================================================ snapshot


@dataclass(frozen=True)
class RolloutFilter:
    """Combinable filters over completions; None/empty = no constraint."""

    correct: bool | None = None
    truncated: bool | None = None
    zero_std: bool | None = None  # True: only groups whose totals are all equal; False: only the others
    reward_min: float | None = None  # on the completion's total reward
    reward_max: float | None = None
    step_min: int | None = None
    step_max: int | None = None
    text: str = ""  # case-insensitive substring of the prompt or the completion; /re/ for a regex (RE2)

    def is_empty(self) -> bool:
        return self == RolloutFilter()

    def describe(self) -> str:
        parts = []
        if self.correct is not None:
            parts.append("correct" if self.correct else "incorrect")
        if self.truncated is not None:
            parts.append("truncated" if self.truncated else "not truncated")
        if self.zero_std is not None:
            parts.append("zero-std groups" if self.zero_std else "groups with signal")
        if self.reward_min is not None or self.reward_max is not None:
            parts.append(f"reward {_fmt_range(self.reward_min, self.reward_max)}")
        if self.step_min is not None or self.step_max is not None:
            parts.append(f"steps {_fmt_range(self.step_min, self.step_max)}")
        if self.text:
            parts.append(f"text {self.text!r}")
        return ", ".join(parts) or "none"


def _fmt_range(lo: float | None, hi: float | None) -> str:
    f = lambda x: "" if x is None else f"{x:g}"  # noqa: E731
    return f"{f(lo)}..{f(hi)}"


def parse_range(text: str, kind: type = float) -> tuple[Any, Any]:
    """'a..b', 'a..', '..b' or 'a' -> (lo, hi); '' -> (None, None). Raises ValueError with the fix."""
    s = text.strip()
    if not s:
        return None, None
    lo_s, sep, hi_s = s.partition("..")
    if not sep:
        v = kind(s)
        return v, v
    lo = kind(lo_s) if lo_s.strip() else None
    hi = kind(hi_s) if hi_s.strip() else None
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{text!r}: the low end is above the high end; write low..high")
    return lo, hi


@dataclass
class StepSummary:
    step: np.ndarray
    groups: np.ndarray
    completions: np.ndarray
    mean_reward: np.ndarray
    accuracy: np.ndarray
    zero_std_frac: np.ndarray
    mean_tokens: np.ndarray
    truncated_frac: np.ndarray
    matches: np.ndarray | None  # completions matching the filter, per step


@dataclass
class Selection:
    filter: RolloutFilter
    mask: np.ndarray  # bool per completion (live groups only)
    group_matches: np.ndarray  # int per group
    count: int
    seconds: float


class Rollouts:
    """An immutable, columnar snapshot of a run's rollouts. `extend` returns a new one."""

    def __init__(self, chunks: Iterable[Chunk] = (), report: ReadReport | None = None) -> None:
        import pyarrow as pa

        self.chunks = [c for c in chunks if c.groups]
        self.report = report or ReadReport()
        ch = self.chunks
        cat = lambda xs, dt: np.concatenate(xs).astype(dt, copy=False) if xs else np.zeros(0, dt)  # noqa: E731
        self.g_v = cat([c.v for c in ch], np.int64)
        self.g_step = cat([c.step for c in ch], np.int64)
        self.g_group = cat([c.group for c in ch], np.int64)
        self.g_n = cat([c.n for c in ch], np.int64)
        self.g_start = np.zeros(len(self.g_n), dtype=np.int64)
        if len(self.g_n):
            np.cumsum(self.g_n[:-1], out=self.g_start[1:])
        self.prompt = pa.chunked_array([c.prompt for c in ch], pa.string())
        self.gold = pa.chunked_array([c.gold for c in ch], pa.string())
        self.extra = pa.chunked_array([c.extra for c in ch], pa.string())
        self.text = pa.chunked_array([c.text for c in ch], pa.string())
        self.extracted = pa.chunked_array([c.extracted for c in ch], pa.string())
        self.cextra = pa.chunked_array([c.cextra for c in ch], pa.string())
        self.correct = cat([c.correct for c in ch], bool)
        self.truncated = cat([c.truncated for c in ch], bool)
        self.total = cat([c.total for c in ch], np.float64)
        self.advantage = cat([c.advantage for c in ch], np.float64)
        self.tokens = cat([c.tokens for c in ch], np.int64)
        names: list[str] = []
        for c in ch:
            names += [k for k in c.rewards if k not in names]
        self.reward_names = names
        self.rewards = {k: cat([c.rewards.get(k, np.full(c.completions, np.nan)) for c in ch], np.float64)
                        for k in names}
        G, C = len(self.g_step), len(self.total)
        self.c_gid = np.repeat(np.arange(G, dtype=np.int64), self.g_n)
        self.c_index = np.arange(C, dtype=np.int64) - self.g_start[self.c_gid] if C else np.zeros(0, np.int64)

        # The latest record of each (step, group) wins: a resumed run records its redone steps again.
        self.g_live = np.ones(G, dtype=bool)
        if G:
            order = np.lexsort((np.arange(G), self.g_group, self.g_step))
            s, g = self.g_step[order], self.g_group[order]
            last = np.ones(G, dtype=bool)
            last[:-1] = (s[1:] != s[:-1]) | (g[1:] != g[:-1])
            self.g_live[order[~last]] = False
        self.report.replaced = int(G - self.g_live.sum())
        self.c_live = self.g_live[self.c_gid]

        # Per group: mean and spread of the totals, correct count.
        fin = np.isfinite(self.total)
        tot0 = np.where(fin, self.total, 0.0)
        self.g_mean = np.full(G, np.nan)
        self.g_std = np.full(G, np.nan)
        self.g_zero_std = np.zeros(G, dtype=bool)
        self.g_correct = np.zeros(G, dtype=np.int64)
        nz = self.g_n > 0
        if C and nz.any():
            idx = self.g_start[nz]
            cnt = np.add.reduceat(fin.astype(np.float64), idx)
            s1 = np.add.reduceat(tot0, idx)
            s2 = np.add.reduceat(tot0 * tot0, idx)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = s1 / cnt
                self.g_mean[nz] = mean
                self.g_std[nz] = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
            hi = np.maximum.reduceat(np.where(fin, self.total, -np.inf), idx)
            lo = np.minimum.reduceat(np.where(fin, self.total, np.inf), idx)
            # all totals equal: GRPO's advantage is zero for the whole group, no learning signal
            self.g_zero_std[nz] = (hi - lo <= 1e-6) | (cnt <= 1)
            self.g_correct[nz] = np.add.reduceat(self.correct.astype(np.int64), idx)

        # Steps (live groups only) and where each group sits among them.
        self.steps = np.unique(self.g_step[self.g_live])
        self.g_stepidx = np.searchsorted(self.steps, self.g_step)
        self.g_stepidx[~self.g_live] = -1
        self._prompt_ids: np.ndarray | None = None
        self._summary: StepSummary | None = None

    # ------------------------------------------------------------ growing
    def extend(self, chunks: list[Chunk], report: ReadReport | None = None) -> "Rollouts":
        """A new snapshot with more chunks; small trailing chunks (a live run's polls) are merged."""
        chunks = [c for c in chunks if c.groups]
        if not chunks:
            if report is not None and report is not self.report:
                return Rollouts(self.chunks, report)
            return self
        old = list(self.chunks)
        for c in chunks:
            if old and old[-1].groups < 2048 and c.groups < 2048 and getattr(old[-1], "_tail", False):
                old[-1] = _merge(old[-1], c)
            else:
                c._tail = True  # type: ignore[attr-defined]
                old.append(c)
        return Rollouts(old, report or self.report)

    # ------------------------------------------------------------ sizes
    @property
    def num_groups(self) -> int:
        return int(self.g_live.sum())

    @property
    def num_completions(self) -> int:
        return int(self.c_live.sum())

    def nbytes(self) -> int:
        arrays = [self.prompt, self.gold, self.text, self.extracted, self.extra, self.cextra]
        return (sum(a.nbytes for a in arrays) + sum(a.nbytes for a in self.rewards.values())
                + sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray)))

    # ------------------------------------------------------------ steps
    def summary(self, selection: Selection | None = None) -> StepSummary:
        """Per step: groups, completions, mean reward, accuracy, zero-std group fraction, mean length."""
        if selection is None and self._summary is not None:
            return self._summary
        S = len(self.steps)
        gi = self.g_stepidx[self.g_live]
        ci = self.g_stepidx[self.c_gid][self.c_live]
        groups = np.bincount(gi, minlength=S)
        comps = np.bincount(ci, minlength=S)
        tot = self.total[self.c_live]
        fin = np.isfinite(tot)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = StepSummary(
                step=self.steps, groups=groups, completions=comps,
                mean_reward=np.bincount(ci[fin], tot[fin], minlength=S) / np.bincount(ci[fin], minlength=S),
                accuracy=np.bincount(ci, self.correct[self.c_live], minlength=S) / comps,
                zero_std_frac=np.bincount(gi, self.g_zero_std[self.g_live], minlength=S) / groups,
                mean_tokens=np.bincount(ci, self.tokens[self.c_live], minlength=S) / comps,
                truncated_frac=np.bincount(ci, self.truncated[self.c_live], minlength=S) / comps,
                matches=None)
        if selection is None:
            self._summary = out
            return out
        sel_ci = self.g_stepidx[self.c_gid][selection.mask]
        return replace(out, matches=np.bincount(sel_ci, minlength=S))

    def step_groups(self, step: int) -> np.ndarray:
        """Live group ids of a step, by group index."""
        gids = np.flatnonzero(self.g_live & (self.g_step == step))
        return gids[np.argsort(self.g_group[gids], kind="stable")]

    # ------------------------------------------------------------ prompts
    @property
    def prompt_ids(self) -> np.ndarray:
        if self._prompt_ids is None:
            import pyarrow as pa
            import pyarrow.compute as pc

            if len(self.g_step):
                enc = pc.dictionary_encode(pa.concat_arrays(self.prompt.chunks))
                self._prompt_ids = _numbers(enc.indices, np.int64, -1)
            else:
                self._prompt_ids = np.zeros(0, dtype=np.int64)
        return self._prompt_ids

    def history(self, gid: int) -> np.ndarray:
        """Every live group with the same prompt as group `gid`, by step (then group index)."""
        ids = self.prompt_ids
        gids = np.flatnonzero(self.g_live & (ids == ids[gid]))
        return gids[np.lexsort((self.g_group[gids], self.g_step[gids]))]

    # ------------------------------------------------------------ records
    def group_record(self, gid: int) -> dict[str, Any]:
        """One group as a JSONL-shaped dict."""
        s, n = int(self.g_start[gid]), int(self.g_n[gid])
        extra = self.extra[gid].as_py()
        return {"v": int(self.g_v[gid]), "step": int(self.g_step[gid]), "group": int(self.g_group[gid]),
                "prompt": self.prompt[gid].as_py(), "gold": self.gold[gid].as_py(),
                **(json.loads(extra) if extra else {}),
                "completions": [self._completion(c) for c in range(s, s + n)]}

    def _completion(self, c: int) -> dict[str, Any]:
        extra = self.cextra[c].as_py()
        return {"text": self.text[c].as_py(), "extracted": self.extracted[c].as_py(),
                "correct": bool(self.correct[c]),
                "rewards": {k: _none(a[c]) for k, a in self.rewards.items()},
                "total": _none(self.total[c]), "advantage": _none(self.advantage[c]),
                "tokens": int(self.tokens[c]), "truncated": bool(self.truncated[c]),
                **(json.loads(extra) if extra else {})}

    # ------------------------------------------------------------ filters
    def select(self, f: RolloutFilter) -> Selection:
        """The completions (of live groups) that pass every filter in f."""
        import pyarrow.compute as pc

        t0 = time.perf_counter()
        m = self.c_live.copy()
        if f.correct is not None:
            m &= self.correct == f.correct
        if f.truncated is not None:
            m &= self.truncated == f.truncated
        if f.zero_std is not None:
            m &= self.g_zero_std[self.c_gid] == f.zero_std
        if f.reward_min is not None:
            m &= self.total >= f.reward_min  # NaN totals fail both bounds
        if f.reward_max is not None:
            m &= self.total <= f.reward_max
        if f.step_min is not None or f.step_max is not None:
            gm = np.ones(len(self.g_step), dtype=bool)
            if f.step_min is not None:
                gm &= self.g_step >= f.step_min
            if f.step_max is not None:
                gm &= self.g_step <= f.step_max
            m &= gm[self.c_gid]
        if f.text and m.any():
            regex = len(f.text) > 2 and f.text.startswith("/") and f.text.endswith("/")
            if regex:
                match = lambda arr: pc.match_substring_regex(arr, f.text[1:-1])  # noqa: E731
            else:
                match = lambda arr: pc.match_substring(arr, f.text, ignore_case=True)  # noqa: E731
            gm = _bools(match(self.prompt), len(self.g_step))
            hit = gm[self.c_gid]
            # search only the completions still in play, in the chunks that have any
            hit |= self._match_text(match, m & ~hit)
            m &= hit
        gcount = np.bincount(self.c_gid[m], minlength=len(self.g_step))
        return Selection(f, m, gcount, int(m.sum()), time.perf_counter() - t0)

    def _match_text(self, match, want: np.ndarray) -> np.ndarray:
        out = np.zeros(len(want), dtype=bool)
        pos = 0
        for arr in self.text.chunks:
            n = len(arr)
            if want[pos:pos + n].any():
                out[pos:pos + n] = _bools(match(arr), n)
            pos += n
        return out

    # ------------------------------------------------------------ export
    def export_jsonl(self, path: Path | str, mask: np.ndarray | None = None) -> int:
        """Write the selected completions (all live ones by default), one JSON object a line.
        Written to a temporary name, then renamed. Returns the number of lines."""
        mask = self.c_live if mask is None else mask
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        n = 0
        with open(tmp, "w", encoding="utf-8") as out:
            for c in np.flatnonzero(mask):
                gid = int(self.c_gid[c])
                rec = {"step": int(self.g_step[gid]), "group": int(self.g_group[gid]),
                       "index": int(self.c_index[c]), "prompt": self.prompt[gid].as_py(),
                       "gold": self.gold[gid].as_py(), **self._completion(int(c))}
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
        os.replace(tmp, path)
        return n


def _bools(arr, n: int) -> np.ndarray:
    return _numbers(arr, bool, False).reshape(n)


def _merge(a: Chunk, b: Chunk) -> Chunk:
    import pyarrow as pa

    names = list(dict.fromkeys([*a.rewards, *b.rewards]))
    pick = lambda c, k: c.rewards.get(k, np.full(c.completions, np.nan))  # noqa: E731
    out = Chunk(
        v=np.concatenate([a.v, b.v]), step=np.concatenate([a.step, b.step]),
        group=np.concatenate([a.group, b.group]), n=np.concatenate([a.n, b.n]),
        prompt=pa.concat_arrays([a.prompt, b.prompt]), gold=pa.concat_arrays([a.gold, b.gold]),
        extra=pa.concat_arrays([a.extra, b.extra]), text=pa.concat_arrays([a.text, b.text]),
        extracted=pa.concat_arrays([a.extracted, b.extracted]),
        correct=np.concatenate([a.correct, b.correct]), truncated=np.concatenate([a.truncated, b.truncated]),
        total=np.concatenate([a.total, b.total]), advantage=np.concatenate([a.advantage, b.advantage]),
        tokens=np.concatenate([a.tokens, b.tokens]),
        rewards={k: np.concatenate([pick(a, k), pick(b, k)]) for k in names},
        cextra=pa.concat_arrays([a.cextra, b.cextra]))
    out._tail = True  # type: ignore[attr-defined]
    return out
