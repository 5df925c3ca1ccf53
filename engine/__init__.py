"""The grpo-tui training engine: config, data, rewards, TRL GRPO training, run directory. Never imports Textual."""
