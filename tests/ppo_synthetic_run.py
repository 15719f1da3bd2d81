"""test_ppo.py's synthetic PPO task as a script, so `accelerate launch` can run it on N processes.

    [accelerate launch ...] python tests/ppo_synthetic_run.py POLICY REWARD_FOLDER OUT.json PER_PROCESS_BATCH [UPDATES [SEED]]

The reward is the share of answer tokens in a liked quarter of the vocabulary. The global batch
(8 rollouts an update) is the same for any number of processes. The main process writes the
per-update mean scores, whether whitening over the global batch matched one process's, a few
sampled answers, and how many weights were empty shards (DeepSpeed ZeRO-3) outside and inside
`PPOTrainer.gathered()`, the context rollouts generate in.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from rlhf import ppo_math as M  # noqa: E402
from rlhf.models import build_models  # noqa: E402
from rlhf.ppo import PPOConfig, PPOTrainer  # noqa: E402
from tiny_models import CountingReward  # noqa: E402

UPDATES = 30


def whitening_error(accelerator) -> float:
    """Each process whitens its own rows of a fixed batch with global statistics; the result must
    equal whitening the whole batch in one process."""
    x = torch.linspace(-3, 5, 8 * 6).reshape(8, 6) ** 2
    mask = (torch.arange(6)[None, :] < torch.tensor([6, 2, 5, 1, 6, 3, 4, 6])[:, None]).long()
    world, rank = accelerator.num_processes, accelerator.process_index
    rows = slice(rank * 8 // world, (rank + 1) * 8 // world)
    sum_all = None if world == 1 else (lambda t: accelerator.reduce(t, "sum"))
    mine = M.masked_whiten(x[rows], mask[rows], sum_all=sum_all)
    return (mine - M.masked_whiten(x, mask)[rows]).abs().max().item()


def empty_weights(model: torch.nn.Module) -> int:
    return sum(p.numel() == 0 for p in model.parameters())


def main() -> None:
    policy, reward, out, batch = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    updates = int(sys.argv[5]) if len(sys.argv) > 5 else UPDATES
    seed = int(sys.argv[6]) if len(sys.argv) > 6 else 3
    torch.manual_seed(0)
    trained, roles, tokenizer, reward_tokenizer = build_models(policy, reward, None, "shared")
    roles.reward_model = CountingReward(torch.arange(40, len(tokenizer), 4), tokenizer.eos_token_id,
                                        tokenizer.pad_token_id)
    config = PPOConfig(output_dir=str(out.parent / f"{out.stem}-work"), total_episodes=8 * updates,
                       per_device_train_batch_size=batch, response_length=8, learning_rate=1e-2, kl_coef=0.0,
                       missing_eos_penalty=None, temperature=1.0, save_steps=0, logging_steps=1, use_cpu=True,
                       report_to=[], disable_tqdm=True, seed=seed)
    prompts = [f"Say something about item {i}" for i in range(16)]
    trainer = PPOTrainer(config, trained, roles, tokenizer, reward_tokenizer, prompts)
    error = whitening_error(trainer.accelerator)
    errors = trainer.accelerator.gather(torch.tensor([error])).tolist()
    history = [h for h in trainer.train() if "objective/scores" in h]
    outside = empty_weights(trainer.accelerator.unwrap_model(trainer.model))
    with trainer.gathered() as model:
        inside = empty_weights(model)
    if trainer.accelerator.is_main_process:
        out.write_text(json.dumps({"world_size": trainer.accelerator.num_processes, "whitening_error": max(errors),
                                   "scores": [h["objective/scores"] for h in history],
                                   "empty_weights": {"outside": outside, "inside": inside},
                                   "answers": [row["answer"] for row in trainer.samples_log],
                                   "episodes_per_update": [round(h["episodes_per_second"] * h["update_seconds"])
                                                           for h in history]}))


if __name__ == "__main__":
    main()
