"""Stage 3: PPO fine-tuning of the SFT policy against the reward model (`python -m rlhf`)."""
