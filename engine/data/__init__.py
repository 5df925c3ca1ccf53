"""Training data: one loader for training, SFT and eval; prompts; synthetic problems."""
