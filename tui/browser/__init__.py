"""The rollout browser (`grpo-tui browse`): run list, steps, groups, completions."""
