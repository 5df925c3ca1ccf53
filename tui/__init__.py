"""The grpo-tui front ends: CLI, headless printer, Textual dashboard, rollout browser."""
