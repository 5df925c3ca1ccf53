"""The characters run text is never shown or written with as it is: the one list the UIs and the model card share.

Run text (prompts, completions, preset and reward names, paths, error messages) comes from datasets, models and
user code. These characters would act on a terminal or reorder what it shows: C0 controls but tab and newline,
DEL, C1 controls (0x9b is a one-byte CSI), line and paragraph separators, and bidi controls.
"""

from __future__ import annotations

UNSAFE_CODEPOINTS = frozenset(
    (
        *range(0, 9),
        *range(11, 32),
        0x7F,
        *range(0x80, 0xA0),
        0x2028,
        0x2029,
        *range(0x202A, 0x202F),
        *range(0x2066, 0x206A),
    )
)
