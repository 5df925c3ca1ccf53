"""Memory planning: a model's numbers, a preset's peak memory, what to change when it does not fit.

model_source.py  [model] name -> Arch: a config through transformers, or the offline fallback table
arch.py          Arch: parameters (total, active, quantizable), layer shapes; meta-device counting
terms.py         one function per memory term of a GRPO step
memory.py        estimate(): the step's shape, the terms added up per phase, the peak
advice.py        fit_advice(): the changes that make a preset fit a card
recipes.py       full / LoRA / QLoRA recipes for any model (`grpo-tui presets --model`)
"""
