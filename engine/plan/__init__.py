"""Memory planning: per-preset peak memory estimates and fit advice."""
