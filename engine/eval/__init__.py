"""Evaluation of a model or a run on a held-out set (`grpo-tui eval`)."""
