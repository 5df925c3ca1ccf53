"""Evaluation: what the model can do, before, during and after training.

The computing half, one job a module: data.py (datasets), resolve.py (which
model, and loading it), generation.py, scoring.py, stats.py, report.py (results
files, before/after comparison), evaluate.py (one model on one dataset),
callback.py (during training) and lm_eval_gsm8k.py (the lm-eval protocol). The
`grpo-tui eval` front end (arguments, progress bar, tables) is tui/console/eval.py.

Every item is answered greedily (pass@1); with --samples K also K sampled
answers (pass@1 as their mean, pass@K with the unbiased estimator, majority
vote). Each answer is scored twice: strictly, in the format the model was
trained to answer in (engine.rewards.extract_answer + is_correct: what the
rewards saw), and flexibly (the last number; for MATH the last \\boxed{}), the
way benchmark parsers read free text. A format change alone moves the strict
score a lot and the flexible one little; the gap between them is the format.

Output: DIR/<label>/results.jsonl (one item a line), DIR/<label>/summary.json
(accuracies with Wilson 95% intervals), and with two or more models
DIR/compare.json + compare.md (the before/after table, plus how many items
each model fixed or broke). docs/eval.md has the details.

During training, callback.py runs the greedy part on a fixed held-out subset
every [eval] every_steps steps and writes `eval` events.

Heavy imports (torch, transformers, peft, datasets) happen inside functions so
that `grpo-tui eval --help` is instant; this module never imports textual.
"""
