"""Arrow segments: a columnar copy of a byte range of rollouts.jsonl, and the columns readers use.

``rollouts/seg-<start>-<end>.arrow`` holds bytes [start, end) of rollouts.jsonl
as an Arrow IPC file (zstd), written to a temporary name and then renamed, so a
segment is either whole or absent. `Chunk` is a batch of groups in columns
(numpy for numbers, Arrow string arrays for text): built from JSONL records,
written to and read from a segment, and concatenated into a `Rollouts` snapshot.
Segments are only ever read as Arrow arrays of plain types: never executed,
evaluated or unpickled.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grpo_tui.rundir.names import SCHEMA_VERSION
from grpo_tui.rundir.rollouts.records import (
    COMPLETION_KEYS,
    GROUP_KEYS,
    TOKEN_ARRAYS,
    CompletionRecord,
    GroupRecord,
    ReadReport,
    unpack_array,
)

# Version of the Arrow segment layout (schema metadata "format"). 2 added the per-token columns;
# a format-1 segment reads with those absent.
SEGMENT_FORMAT = 2
_SEGMENT_NAME = re.compile(r"seg-(\d{12})-(\d{12})\.arrow")
_META_KEY = b"grpo_tui.rollouts"


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


def sealed_end(segment_dir: Path, jsonl_size: int) -> int:
    """Where the last segment that fits the JSONL ends (0 when there is none)."""
    return max((end for _, end, _ in list_segments(segment_dir) if end <= jsonl_size), default=0)


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
    return np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little")[offset : offset + n].astype(bool)


def _valid(arr) -> np.ndarray | None:
    """Where arr has a value (None when it has no nulls)."""
    if not arr.null_count:
        return None
    buf = arr.buffers()[0]
    return _bits(buf, arr.offset, len(arr)) if buf is not None else np.zeros(len(arr), dtype=bool)


_NUMPY = {
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "float": np.float32,
    "double": np.float64,
    "halffloat": np.float16,
}


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


_ARROW_TOKEN = {"<i4": "int32", "<u2": "uint16", "<f2": "float16"}  # TOKEN_ARRAYS dtypes as pyarrow type names


def _token_type(name: str):
    import pyarrow as pa

    return getattr(pa, _ARROW_TOKEN[TOKEN_ARRAYS[name]])()


def _list_array(values: list[np.ndarray | None], name: str):
    """An Arrow list array (one list per completion, null where absent) of one of the TOKEN_ARRAYS, from buffers."""
    import pyarrow as pa

    dtype, n = TOKEN_ARRAYS[name], len(values)
    lens = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64, count=n)
    bitmap, offsets, nulls = _offsets_and_nulls(lens, values, "a chunk holds over 2**31 tokens")
    present = [v for v in values if v is not None]
    flat = np.concatenate(present).astype(dtype, copy=False) if present else np.zeros(0, dtype=dtype)
    child = pa.Array.from_buffers(_token_type(name), len(flat), [None, pa.py_buffer(flat.tobytes())])
    return pa.Array.from_buffers(pa.list_(_token_type(name)), n, [bitmap, offsets], null_count=nulls, children=[child])


def _offsets_and_nulls(lens: np.ndarray, values: list, too_big: str) -> tuple[Any, Any, int]:
    """The validity bitmap (None without nulls), the int32 offsets buffer and the null count of a variable-length
    Arrow array whose items have these lengths (None items are null); ValueError(too_big) past int32 offsets."""
    import pyarrow as pa

    n = len(values)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError(too_big)
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=n)
    nulls = int(n - valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes()) if nulls else None
    return bitmap, pa.py_buffer(offsets.astype(np.int32).tobytes()), nulls


def token_array(column: Any, c: int, name: str) -> np.ndarray | None:
    """Completion c's array from a token list column; None where it is null."""
    scalar = column[c]
    if not scalar.is_valid:
        return None
    return _numbers(scalar.values, np.dtype(TOKEN_ARRAYS[name]).newbyteorder("="), 0)


def _absent_tokens(n: int) -> dict[str, Any]:
    import pyarrow as pa

    return {k: pa.nulls(n, pa.list_(_token_type(k))) for k in TOKEN_ARRAYS}


def _string_array(values: list[str | None]):
    """pa.string() array from Python strings, built from buffers."""
    import pyarrow as pa

    n = len(values)
    enc = [v.encode("utf-8", "surrogatepass") if v is not None else b"" for v in values]
    lens = np.fromiter(map(len, enc), dtype=np.int64, count=n)
    bitmap, offsets, nulls = _offsets_and_nulls(lens, values, "a chunk holds over 2 GiB of text")
    return pa.Array.from_buffers(pa.string(), n, [bitmap, offsets, pa.py_buffer(b"".join(enc))], null_count=nulls)


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
    # Per-token arrays (records.TOKEN_ARRAYS): name -> pa.ListArray [completions], null where not recorded.
    # None while they sit unread in `token_source` (a segment): they are most of a segment's bytes and
    # are only needed for the completion being looked at.
    token: dict[str, Any] | None = None
    token_source: Path | None = None

    def tokens_loaded(self) -> dict[str, Any]:
        """The per-token columns, read from the segment on first use."""
        if self.token is None:
            self.token = (
                _read_token_columns(self.token_source, self.groups, self.n)
                if self.token_source
                else _absent_tokens(self.completions)
            )
        return self.token

    def unload_tokens(self) -> None:
        """Free the per-token columns of a segment chunk (read again when needed)."""
        if self.token_source is not None:
            self.token = None

    def token_arrays(self, c: int) -> dict[str, np.ndarray | None]:
        """Completion c's per-token arrays, None where not recorded."""
        return {k: token_array(a, c, k) for k, a in self.tokens_loaded().items()}

    @property
    def groups(self) -> int:
        return len(self.step)

    @property
    def completions(self) -> int:
        return len(self.correct)

    @classmethod
    def from_records(cls, records: Iterable[dict[str, Any]], report: ReadReport) -> Chunk:
        """Columns from JSONL group records; malformed records are counted in report.invalid."""
        vs, steps, groups, ns, prompts, golds, extras = [], [], [], [], [], [], []
        texts, exs, cor, tru, tot, adv, tok, cext = [], [], [], [], [], [], [], []
        token: dict[str, list[np.ndarray | None]] = {k: [] for k in TOKEN_ARRAYS}
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
                for k, dtype in TOKEN_ARRAYS.items():
                    token[k].append(unpack_array(c.get(k), dtype))
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
            v=i64(vs),
            step=i64(steps),
            group=i64(groups),
            n=i64(ns),
            prompt=_string_array(prompts),
            gold=_string_array(golds),
            extra=_string_array(extras),
            text=_string_array(texts),
            extracted=_string_array(exs),
            correct=np.asarray(cor, dtype=bool),
            truncated=np.asarray(tru, dtype=bool),
            total=np.asarray(tot, dtype=np.float64),
            advantage=np.asarray(adv, dtype=np.float64),
            tokens=i64(tok),
            rewards={k: np.asarray(col, dtype=np.float64) for k, col in rewards.items()},
            cextra=_string_array(cext),
            token={k: _list_array(vals, k) for k, vals in token.items()},
        )

    # ---------------------------------------------------------------- Arrow
    def to_table(self, meta: dict[str, Any]):
        import pyarrow as pa

        nc, names = self.completions, list(self.rewards)
        offsets = np.zeros(self.groups + 1, dtype=np.int32)
        np.cumsum(self.n, out=offsets[1:])
        vals = (
            np.stack([self.rewards[k] for k in names], axis=1).reshape(-1) if names else np.zeros(0, dtype=np.float64)
        )
        rewards = pa.MapArray.from_arrays(
            pa.array(np.arange(nc + 1, dtype=np.int32) * len(names)),
            pa.array(names * nc, pa.string()),
            pa.array(vals, pa.float64(), mask=np.isnan(vals)),
        )
        nan = lambda a: pa.array(a, mask=np.isnan(a))  # noqa: E731
        comps = pa.StructArray.from_arrays(
            [
                self.text,
                self.extracted,
                pa.array(self.correct),
                rewards,
                nan(self.total),
                nan(self.advantage),
                pa.array(self.tokens, pa.int64()),
                pa.array(self.truncated),
                self.cextra,
            ],
            names=["text", "extracted", "correct", "rewards", "total", "advantage", "tokens", "truncated", "extra"],
        )
        group_lists = lambda a: pa.ListArray.from_arrays(pa.array(offsets), a)  # noqa: E731
        tokens = self.tokens_loaded()
        table = pa.table(
            {
                "v": pa.array(self.v, pa.int64()),
                "step": pa.array(self.step, pa.int64()),
                "group": pa.array(self.group, pa.int64()),
                "prompt": self.prompt,
                "gold": self.gold,
                "extra": self.extra,
                "completions": group_lists(comps),
                # top-level columns (one list of completions' lists per group), so a reader can skip them
                **{k: group_lists(tokens[k]) for k in TOKEN_ARRAYS},
            }
        )
        return table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})

    @classmethod
    def from_table(cls, table) -> Chunk:
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
            v=ints(vcol, 1) if vcol is not None else np.ones(g, dtype=np.int64),
            step=step,
            group=ints(col("group"), -1),
            n=n,
            prompt=strings(col("prompt", False), g),
            gold=strings(col("gold", False), g),
            extra=strings(col("extra", False), g),
            text=strings(field("text"), nc),
            extracted=strings(field("extracted"), nc),
            correct=bools(field("correct"), nc),
            truncated=bools(field("truncated"), nc),
            total=floats(field("total"), nc),
            advantage=floats(field("advantage"), nc),
            tokens=ints(tokens, 0) if tokens is not None else np.zeros(nc, dtype=np.int64),
            rewards=rewards,
            cextra=strings(field("extra"), nc),
            token=_token_columns(table, g, n) if TOKEN_ARRAYS.keys() & set(table.column_names) else None,
        )

    def records(self) -> list[dict[str, Any]]:
        """The groups as JSONL-shaped dicts (rewards NaN -> None)."""
        texts, exs, cext = self.text.to_pylist(), self.extracted.to_pylist(), self.cextra.to_pylist()
        prompts, golds, extras = self.prompt.to_pylist(), self.gold.to_pylist(), self.extra.to_pylist()
        out, c = [], 0
        for i in range(self.groups):
            comps = []
            for _ in range(int(self.n[i])):
                comps.append(completion_record(self, c, texts[c], exs[c], cext[c]))
                c += 1
            out.append(
                GroupRecord(
                    step=int(self.step[i]),
                    group=int(self.group[i]),
                    prompt=prompts[i],
                    gold=golds[i],
                    completions=comps,
                    v=int(self.v[i]),
                    extra=json.loads(extras[i]) if extras[i] else {},
                ).to_dict()
            )
        return out


def completion_record(cols: Any, c: int, text: str, extracted: str | None, extra: str | None) -> CompletionRecord:
    """Completion row c of a Chunk or a Rollouts snapshot (same column names); its strings are
    passed in because reading them one at a time from Arrow is slow."""
    return CompletionRecord(
        text=text,
        extracted=extracted,
        correct=bool(cols.correct[c]),
        rewards={k: _none(a[c]) for k, a in cols.rewards.items()},
        total=_none(cols.total[c]),
        advantage=_none(cols.advantage[c]),
        tokens=int(cols.tokens[c]),
        truncated=bool(cols.truncated[c]),
        **cols.token_arrays(c),
        extra=json.loads(extra) if extra else {},
    )


def _none(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def write_segment(segment_dir: Path, start: int, end: int, chunk: Chunk) -> Path:
    """Atomically write rollouts.jsonl bytes [start, end) as columns: temporary file, fsync, rename."""
    import pyarrow as pa

    segment_dir.mkdir(exist_ok=True)
    meta = {
        "format": SEGMENT_FORMAT,
        "start": start,
        "end": end,
        "groups": chunk.groups,
        "completions": chunk.completions,
        "first_step": int(chunk.step.min()) if chunk.groups else None,
        "last_step": int(chunk.step.max()) if chunk.groups else None,
        "written": round(time.time(), 3),
    }
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


def read_segment(path: Path, tokens: bool = False) -> Chunk:
    """A segment's columns; its per-token columns are read later, on first use (`tokens`: now)."""
    import pyarrow as pa

    with pa.OSFile(str(path)) as src:
        schema = pa.ipc.open_file(src).schema
    meta = json.loads((schema.metadata or {}).get(_META_KEY, b"{}"))
    fmt = meta.get("format", SEGMENT_FORMAT)
    lazy = not tokens and bool(TOKEN_ARRAYS.keys() & set(schema.names))
    keep = [i for i, name in enumerate(schema.names) if not (lazy and name in TOKEN_ARRAYS)]
    with pa.OSFile(str(path)) as src:
        table = pa.ipc.open_file(src, options=pa.ipc.IpcReadOptions(included_fields=keep)).read_all()
    chunk = Chunk.from_table(table)
    if lazy:
        chunk.token_source = path
    chunk.format = fmt  # type: ignore[attr-defined]
    return chunk


def _token_columns(table: Any, groups: int, n: np.ndarray) -> dict[str, Any]:
    """The per-token columns of a segment table as per-completion lists; raises ValueError when mistyped.
    A missing column reads as not recorded."""
    import pyarrow as pa
    import pyarrow.compute as pc

    nc = int(n.sum())
    out = _absent_tokens(nc)
    for k in TOKEN_ARRAYS:
        if k not in table.column_names:
            continue
        column = table.column(k)
        a = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        want = pa.list_(pa.list_(_token_type(k)))
        if a.type != want:
            raise ValueError(f"{k} must be {want}, got {a.type}")
        if len(a) != groups or not np.array_equal(_numbers(pc.list_value_length(a), np.int64, 0), n):
            raise ValueError(f"{k} does not line up with the completions")
        out[k] = pc.list_flatten(a)
    return out


def _read_token_columns(path: Path, groups: int, n: np.ndarray) -> dict[str, Any]:
    """Only the per-token columns of a segment (a segment that changed or went missing reads as not recorded)."""
    import pyarrow as pa

    try:
        with pa.OSFile(str(path)) as src:
            names = pa.ipc.open_file(src).schema.names
        with pa.OSFile(str(path)) as src:
            keep = [i for i, name in enumerate(names) if name in TOKEN_ARRAYS]
            table = pa.ipc.open_file(src, options=pa.ipc.IpcReadOptions(included_fields=keep)).read_all()
        return _token_columns(table, groups, n)
    except (OSError, ValueError, pa.ArrowException):
        return _absent_tokens(int(n.sum()))


def _merge(a: Chunk, b: Chunk) -> Chunk:
    import pyarrow as pa

    names = list(dict.fromkeys([*a.rewards, *b.rewards]))
    pick = lambda c, k: c.rewards.get(k, np.full(c.completions, np.nan))  # noqa: E731
    out = Chunk(
        v=np.concatenate([a.v, b.v]),
        step=np.concatenate([a.step, b.step]),
        group=np.concatenate([a.group, b.group]),
        n=np.concatenate([a.n, b.n]),
        prompt=pa.concat_arrays([a.prompt, b.prompt]),
        gold=pa.concat_arrays([a.gold, b.gold]),
        extra=pa.concat_arrays([a.extra, b.extra]),
        text=pa.concat_arrays([a.text, b.text]),
        extracted=pa.concat_arrays([a.extracted, b.extracted]),
        correct=np.concatenate([a.correct, b.correct]),
        truncated=np.concatenate([a.truncated, b.truncated]),
        total=np.concatenate([a.total, b.total]),
        advantage=np.concatenate([a.advantage, b.advantage]),
        tokens=np.concatenate([a.tokens, b.tokens]),
        rewards={k: np.concatenate([pick(a, k), pick(b, k)]) for k in names},
        cextra=pa.concat_arrays([a.cextra, b.cextra]),
        token={k: pa.concat_arrays([a.tokens_loaded()[k], b.tokens_loaded()[k]]) for k in TOKEN_ARRAYS},
    )
    out._tail = True  # type: ignore[attr-defined]
    return out
