"""Built-in synthetic arithmetic word problems, so the demo trains with no download.

Difficulty 1: one operation on small numbers; 2: two operations; 3: three
operations with larger numbers. Deterministic for a seed. Answers are
non-negative integers, like GSM8K's.
"""

from __future__ import annotations

import random
import re

NAMES = [
    "Ava",
    "Ben",
    "Chen",
    "Dana",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jade",
    "Kofi",
    "Lena",
    "Mateo",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
]
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "pencils", "cookies", "stamps", "shells", "cards"]


# Each operation's sentences. The random draws below are made in the order they always were (a template is chosen
# by index among its operation's), so a seed gives the same problems as before the templates had names.
TEMPLATES: dict[str, list[str]] = {
    "add": ["Then they get {n} more {item}.", "A friend gives them {n} more {item}."],
    "sub": ["Then they give away {n} {item}.", "They lose {n} {item}."],
    "div": ["They split the {item} equally into {n} boxes and keep one box."],
    "mul": ["Then the number of {item} becomes {n} times as many.", "Then they multiply their {item} by {n}."],
}


def _step(rng: random.Random, value: int, item: str, hi: int) -> tuple[str, str, int]:
    """One more sentence applied to the running total: (operation, sentence, new total)."""
    op = rng.choice(["add", "add", "sub", "mul", "div"] if value > 1 else ["add", "mul"])
    if op == "add":
        n = rng.randint(2, hi)
        return "add", rng.choice(TEMPLATES["add"]).format(n=n, item=item), value + n
    if op == "sub" and value > 2:
        n = rng.randint(1, value - 1)
        return "sub", rng.choice(TEMPLATES["sub"]).format(n=n, item=item), value - n
    if op == "div":
        divisors = [d for d in range(2, 6) if value % d == 0]
        if divisors:
            d = rng.choice(divisors)
            return "div", TEMPLATES["div"][0].format(n=d, item=item), value // d
    m = rng.randint(2, 4)
    return "mul", rng.choice(TEMPLATES["mul"]).format(n=m, item=item), value * m


_PATTERNS = [
    (op, re.compile(re.escape(t).replace(re.escape("{n}"), r"\d+").replace(re.escape("{item}"), r"\w+")))
    for op, ts in TEMPLATES.items()
    for t in ts
]


def operations(question: str) -> list[str]:
    """The operations of a synthetic problem, in order ("add", "sub", "mul", "div"); [] for any other text."""
    found = []
    for sentence in re.findall(r"[^.?]+[.?]", question):
        op = next((op for op, pat in _PATTERNS if pat.fullmatch(sentence.strip())), None)
        if op:
            found.append(op)
    return found


def make_problem(rng: random.Random, difficulty: int) -> dict[str, str]:
    hi = {1: 9, 2: 20, 3: 60}[difficulty]
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(2, hi)
    sentences = [f"{name} has {value} {item}."]
    ops = []
    for _ in range(difficulty):
        op, text, value = _step(rng, value, item, hi)
        ops.append(op)
        sentences.append(text)
    sentences.append(f"How many {item} does {name} have now?")
    # "operation" names the kind of problem ("add", "mul+sub"): what [data] balance_by = "operation" balances on.
    return {"question": " ".join(sentences), "answer": str(value), "operation": "+".join(ops)}


def generate(n: int, difficulty: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(f"synthetic-{difficulty}-{seed}")
    return [make_problem(rng, difficulty) for _ in range(n)]
