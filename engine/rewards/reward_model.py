"""A sequence-classification model as a reward, scored the way TRL's GRPOTrainer scores one.

TRL (``GRPOTrainer._calculate_rewards``) renders each prompt plus its completion with the reward model's
own chat template (conversational data) or joins the two texts (plain data), tokenizes them padded on the
right without special tokens, and takes ``logits[:, 0]`` of a ``num_labels=1`` model as the reward. This
does the same in the trainer process; the model and its tokenizer load on the first call (a hub id then
needs the hub; a local directory does not), so pre-flight only checks that a local path exists.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from .chat_format import is_conversational


class RewardModelError(ValueError):
    """A reward model path that cannot be used; the message names the fix (spec.py raises it as RewardSpecError)."""


def _local_path(name: str, base_dir: Path | None) -> Path | None:
    """The local directory ``name`` means, None for a hub id; raises when it looks like a path that isn't there."""
    raw = Path(name).expanduser()
    candidates = [raw] if raw.is_absolute() else [Path(base_dir) / raw] if base_dir is not None else []
    candidates.append(raw if raw.is_absolute() else Path.cwd() / raw)
    for c in candidates:
        if c.is_dir():
            if not (c / "config.json").is_file():
                raise RewardModelError(
                    f"reward 'model:{name}': {c} has no config.json; save the model there with "
                    "save_pretrained (a sequence-classification model with num_labels=1)"
                )
            return c.resolve()
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        where = f" (relative paths are resolved against {base_dir})" if base_dir is not None else ""
        raise RewardModelError(
            f"reward 'model:{name}': no such directory{where}; fix the path or give a hub id such as 'org/name'"
        )
    return None


class RewardModelScorer:
    """Callable like a reward function (TRL's keyword call); runs in the trainer process, on its device."""

    inline = True  # no thread and no deadline in GuardedReward: it is our code, bounded by the model's size

    def __init__(self, source: str) -> None:
        self.source = source
        self.__name__ = source.rstrip("/").rsplit("/", 1)[-1]
        self.device: str | None = None  # None: CUDA when available
        self.chat_template_kwargs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any, Any] | None = None
        self._load_error: BaseException | None = None

    def _load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._load_error is not None:  # one failed load, not one per completion of the retry
                raise self._load_error
            if self._loaded is None:
                try:
                    self._loaded = self._load_now()
                except Exception as e:
                    self._load_error = e
                    raise
            return self._loaded

    def _load_now(self) -> tuple[Any, Any, Any]:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model = AutoModelForSequenceClassification.from_pretrained(self.source, num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(self.source)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        # the score is read at the last token that is not padding, found through the config's pad id
        model.config.pad_token_id = tokenizer.pad_token_id
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device == "cuda":
            device = f"cuda:{torch.cuda.current_device()}"  # this rank's GPU under a launcher
        model.to(device).eval()
        return model, tokenizer, device

    def __call__(self, prompts: list = (), completions: list = (), **kwargs: Any) -> list[float]:
        import torch

        model, tokenizer, device = self._load()
        if is_conversational(prompts):
            from trl.data_utils import apply_chat_template

            texts = [
                apply_chat_template({"messages": list(p) + list(c)}, tokenizer, **self.chat_template_kwargs)["text"]
                for p, c in zip(prompts, completions, strict=True)
            ]
        else:
            texts = [str(p) + str(c) for p, c in zip(prompts, completions, strict=True)]
        inputs = tokenizer(
            text=texts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False
        ).to(device)
        with torch.inference_mode():
            return model(**inputs).logits[:, 0].float().cpu().tolist()


def reward_model(name: str, base_dir: Path | None = None) -> RewardModelScorer:
    """The scorer for ``model:NAME`` (a local directory, relative to base_dir, or a hub id); loads nothing yet."""
    name = name.strip()
    if not name:
        raise RewardModelError("reward 'model:': give a local directory or a hub id after 'model:'")
    local = _local_path(name, base_dir)
    return RewardModelScorer(str(local) if local is not None else name)
