"""A small (under 1,024 tokens) byte-level BPE tokenizer for the random-weight test models, built offline in a second.

The random models (`tiny-random`, the preset smoke test's mini Qwen2) exist to run every code path
fast, not to read. With SmolLM2's 49,152-token vocabulary the output layer is over 95% of a 64-wide
model's arithmetic: every generated token pays a 49,152-way matmul, softmax and sample, and every
training token a 49,152-wide log-softmax forward and back. An under-1,024-token vocabulary trained on the
project's own problem text keeps every token id path (chat template, special tokens, byte fallback
for any text) at a fraction of the cost. Real models keep their own tokenizers.
"""

from __future__ import annotations

from typing import Any

# Part of the cached tiny-random directory's name: change it when the corpus or settings change.
NAME = "bpe974"
VOCAB_SIZE = 1024  # the BPE trainer's ceiling; this corpus yields 974 tokens (the models' vocab_size)
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # SmolLM2's special tokens and ids (0, 1, 2)
# ChatML, as SmolLM2 and Qwen2.5 write it (without their default system message: our prompts bring one).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _corpus() -> list[str]:
    """Problem text and numbers, and no answer-format tags.

    Tags like <answer> then take several tokens each, so a random-weight model almost never
    writes one by chance: its completions score 0 on the format rewards, which tests rely on
    (every group ties, zero_std = 1).
    """
    import re

    from grpo_tui.engine.data.synthetic import generate
    from grpo_tui.engine.rewards.answer_format import ANSWER_FORMATS, EXAMPLE_QUESTION

    prompts = [f.system_prompt for f in ANSWER_FORMATS.values()]
    text = [re.sub(r"</?\w+>", " ", t) for t in prompts] + [EXAMPLE_QUESTION]
    for difficulty in (1, 2, 3):
        for row in generate(3000, difficulty, seed=difficulty):
            text.append(f"{row['question']}\nSo the answer is {row['answer']}. #### {row['answer']}")
    return text


def build_small_tokenizer() -> Any:
    """A transformers fast tokenizer: byte-level BPE, SmolLM2's special tokens, a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=SPECIAL[1],
        eos_token=SPECIAL[2],
        pad_token=SPECIAL[0],
        unk_token=SPECIAL[0],
        chat_template=CHAT_TEMPLATE,
    )
