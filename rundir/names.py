"""What the entries of a run directory are called, and the version of their records: the one module that
spells them.

The engine writes these names and every reader opens them, so they are spelled
here and nowhere else (tests/test_imports.py fails when another module spells
one); `rundir.layout.RunDir` builds each path from them. See docs/run-directory.md.
"""

from __future__ import annotations

SCHEMA_VERSION = 1  # of the records in events.jsonl and the rollouts store

# Files at the top of a run directory.
CONFIG_NAME, EVENTS_NAME, ROLLOUTS_NAME = "config.json", "events.jsonl", "rollouts.jsonl"
ENGINE_LOG_NAME, PID_NAME, LOCK_NAME = "engine.log", "engine.pid", "engine.lock"
OLD_PART_SUFFIX = ".1"  # a capped log's previous part: engine.log.1
RANK_LOG_NAME = "engine.rank{rank}.log"  # the output of one non-zero rank of a multi-process run

# Folders at the top of a run directory.
CONTROL_NAME, CHECKPOINTS_NAME, SEGMENTS_NAME, TRACKERS_NAME = "control", "checkpoints", "rollouts", "trackers"
SFT_NAME, CURRICULUM_NAME, EVAL_NAME = "sft", "curriculum", "eval"
RESTART_PREFIX = "before-restart-"  # before-restart-TIME/: what --restart set aside

# Inside those folders.
SFT_MODEL_NAME = "model"  # sft/model: the SFT stage's finished model
PASS_RATES_NAME = "pass_rates.jsonl"  # curriculum/pass_rates.jsonl
EVAL_RESULTS_NAME = "step-{step}.jsonl"  # eval/step-N.jsonl
CHECKPOINT_PREFIX = "checkpoint-"  # checkpoints/checkpoint-N, as the trainer names them
TRAINER_STATE = "trainer_state.json"  # in a checkpoint: the trainer writes it last
ADAPTER_CONFIG_NAME = "adapter_config.json"  # in a LoRA checkpoint, instead of config.json
# in a checkpoint, beside Trainer's rng_state.pth (with a _<rank> suffix when several processes train):
ENGINE_RNG_FILE = "engine_rng_state.json"  # the engine's own random streams
GENERATION_BUFFER_FILE = "generation_buffer.pt"  # TRL's generation buffer, when the checkpoint falls inside one
