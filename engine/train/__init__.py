"""Training: TRL GRPO and SFT, the rollout recorder, commands at step boundaries."""
