"""Stage 1: supervised fine-tuning on demonstrations (TRL's SFTTrainer), loss on the answer only."""
