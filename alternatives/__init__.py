"""Alternatives to our PPO that learn from the same labels: DPO on the export's pairs, and RLOO and
GRPO (TRL's trainers) against our reward model.

Each is `python -m alternatives {dpo,rloo,grpo} --config configs/<method>.yaml --run NAME`, starts
from the run's SFT policy, and publishes runs/<run>/<method>/ with the same held-out evaluation as
PPO (`ranktune.policy_eval.compare_policies`), so the report can set them side by side.
"""
