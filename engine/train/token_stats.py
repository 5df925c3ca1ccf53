"""Per-token arrays of a recorded completion: which characters of its text each token is, and its statistics.

The log-probabilities and entropies come from the loss's own forward pass
(engine/train/trl_hooks.py, `on_token_stats`); this module turns what that pass
handed over into the float16 arrays of a `CompletionRecord`, and finds each
token's piece of the completion text so a viewer can shade the text token by
token without a tokenizer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

_MAX_CHARS = np.iinfo(np.uint16).max


def token_chars(tokenizer: Any, ids: list[int], text: str) -> np.ndarray | None:
    """Characters of `text` each token decodes to (uint16), or None when the pieces don't add up to its end.

    Decoding tokens one at a time is exact for most byte-level tokenizers and runs in one call; a character
    split over several tokens, or a tokenizer that drops a token's leading space when it stands alone, needs
    the streaming decoder, which gives each character to the token that completes it.
    """
    if tokenizer is None or not ids:
        return None
    fast = getattr(tokenizer, "_tokenizer", None)  # the `tokenizers.Tokenizer` inside a fast tokenizer
    try:
        if fast is not None:
            pieces = fast.decode_batch([[i] for i in ids], skip_special_tokens=True)
        else:
            pieces = [tokenizer.decode([i], skip_special_tokens=True) for i in ids]
        if not text.endswith("".join(pieces)) and fast is not None:
            pieces = _stream_pieces(fast, ids)
    except Exception:  # noqa: BLE001 - a tokenizer that can't decode one token: the view shows no boundaries
        return None
    if pieces is None or not text.endswith("".join(pieces)):
        return None
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))
    if lengths.max(initial=0) > _MAX_CHARS:
        return None
    return lengths.astype(np.uint16)


def _stream_pieces(fast: Any, ids: list[int]) -> list[str] | None:
    try:
        from tokenizers.decoders import DecodeStream
    except ImportError:
        return None
    stream = DecodeStream(skip_special_tokens=True)
    pieces = [stream.step(fast, i) or "" for i in ids]
    joined = "".join(pieces)
    full = fast.decode(ids, skip_special_tokens=True)
    rest = full[len(joined) :]
    if pieces and full.startswith(joined) and rest and set(rest) == {"\ufffd"}:
        # bytes the stream still holds at the end (a character cut off by the length cap) decode, in the
        # full text, to replacement characters: they belong to the last token
        pieces[-1] += rest
    return pieces


def split_rows(
    rows: torch.Tensor, stats: torch.Tensor, lengths: dict[int, int]
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Row index -> (log-probabilities, entropies) as float16, cut to the row's length.

    `rows` are generation-batch row indices, `stats` the (2, rows, width) stack the loss pass handed over
    (on any device; copied here, on the recording thread, so the training thread never waits for it)."""
    idx = rows.detach().cpu().numpy()
    arr = stats.detach().to("cpu", torch.float16).numpy()
    out = {}
    for j, r in enumerate(idx.tolist()):
        n = lengths.get(r)
        if n is not None and n <= arr.shape[2]:
            out[r] = (arr[0, j, :n].copy(), arr[1, j, :n].copy())
    return out
