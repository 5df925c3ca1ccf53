"""Models with random weights built from a config: any size, no download."""

from __future__ import annotations

from typing import Any


def random_qwen2(vocab_size: int, hidden_size: int, intermediate_size: int, layers: int, seed: int = 0) -> Any:
    """A Qwen2 causal LM with random weights (4 heads, 2 KV heads, tied embeddings)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
    )
    return Qwen2ForCausalLM(config)
