"""PPO for language models: `PPOTrainer` (its `PPOConfig` in rlhf/ppo_config.py), in the shape of TRL's trainers.

One update, top to bottom (`PPOTrainer.step`):
1. rollout: sample one answer per prompt from the policy (temperature T, KV cache), keeping the
   sampling log-probs; reference log-probs (adapter off), values, and the reward model's score;
2. rewards: -kl_coef * KL(policy || reference) at every token, plus the score at the last token
   (minus `missing_eos_penalty` for answers that never ended); optionally whitened;
3. GAE advantages (whitened) and returns;
4. `num_ppo_epochs` passes over the batch in `num_mini_batches` minibatches, each an optimizer step
   over `gradient_accumulation_steps` micro-batches: clipped policy loss + vf_coef * clipped value
   loss (+ ptx_coef * SFT loss on demonstrations).
Batch sizes follow TRL: rollouts per update = per_device_train_batch_size *
gradient_accumulation_steps * num_mini_batches (per process).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from transformers import Trainer
from trl.distributed import DistributedBackend
from trl.models.utils import unwrap_model_for_generation

from rlhf import layer_cache, ppo_math as M
from ranktune.sampling import (Samples, answer_logprobs, answer_logprobs_and_entropy, response_logprobs,
                               sample, sample_continuous, sampling_config)
from ranktune.gold import gold_score
from ranktune.prompting import prompt_text
from ranktune.scoring import RewardScorer
from rlhf.int8_sampling import Int8Sampling
from rlhf.ppo_config import PPOConfig


@dataclass
class Rollout:
    """One update's batch on this process: B answers of R tokens, Q prompt tokens, D hidden units."""

    samples: Samples             # prompts; queries (B, Q); responses, mask (B, R); ended (B,)
    logprobs: torch.Tensor       # (B, R) the sampling policy's log-probs of the answer tokens, at temperature T
    ref_logprobs: torch.Tensor   # (B, R) the reference's (the SFT policy), at T
    values: torch.Tensor         # (B, R) the value of the state before each answer token
    scores: torch.Tensor         # (B,) the reward model's normalised scores, as it gave them
    answers: list[str]           # the answers as the reward model read them
    frozen: dict[str, torch.Tensor] | None  # layer cache: states (B, Q + R, D) entering each network's first trained layer
    # from `PPOTrainer.advantages`:
    penalised_scores: torch.Tensor | None = None  # (B,) scores less missing_eos_penalty for answers without EOS
    kl: torch.Tensor | None = None           # (B, R) per-token KL estimate, 0 on padding
    non_score: torch.Tensor | None = None    # (B, R) -kl_coef * kl
    advantages: torch.Tensor | None = None   # (B, R) GAE, whitened
    returns: torch.Tensor | None = None      # (B, R) GAE + values: the value targets


class PPOTrainer(Trainer):
    """Owns the loop; `transformers.Trainer` gives it accelerate, the optimizer/scheduler, callbacks
    (progress bar, logging) and the log history. The models come from `rlhf.models.build_models`."""

    _tag_names = ["trl", "ppo", "ranktune"]

    def __init__(self, args: PPOConfig, model, roles, processing_class, reward_tokenizer, train_prompts: list,
                 reward_normalization: tuple[float, float] = (1.0, 0.0), reward_max_length: int = 512,
                 ptx_batches=None, callbacks=None, reward_scorer=None,
                 member_normalization: list[tuple[float, float]] | None = None):
        super().__init__(model=model, args=args, processing_class=processing_class, callbacks=callbacks)
        self.roles, self.tokenizer, self.prompts = roles, processing_class, list(train_prompts)
        self.reward_scorer = reward_scorer  # a remote one (ranktune.remote_scoring); None: the local reward role
        self.reward_tokenizer, self.reward_normalization = reward_tokenizer, reward_normalization
        self.member_normalization = member_normalization  # an ensemble's per-member (gain, bias); None: one model
        self.reward_max_length, self.ptx_batches = reward_max_length, ptx_batches
        world = self.accelerator.num_processes
        self.num_updates = max(1, args.total_episodes // (args.local_batch_size * world))
        if len(self.prompts) < args.local_batch_size * world:
            raise ValueError(f"{len(self.prompts)} training prompts are fewer than the {args.local_batch_size} x "
                             f"{world} rollouts of one update")
        self.optimizer_steps = self.num_updates * args.num_ppo_epochs * args.num_mini_batches
        self.create_optimizer_and_scheduler(num_training_steps=self.optimizer_steps)
        if args.target_kl is not None:
            self.kl_ctl = M.AdaptiveKLController(args.kl_coef, args.target_kl, args.kl_horizon)
        else:
            self.kl_ctl = M.FixedKLController(args.kl_coef)
        self.generation_config = sampling_config(processing_class, args.response_length, args.temperature)
        self.samples_log: list[dict] = []
        # the frozen-layer cache: on where a split forward reproduces the full one (rlhf/layer_cache.py)
        # DeepSpeed and FSDP own the module tree they wrap: the cache cuts a layer stack out of it
        why = ("turned off" if not args.cache_frozen_layers else "DeepSpeed" if self.is_deepspeed_enabled
               else "FSDP" if getattr(self, "is_fsdp_enabled", False)
               else layer_cache.enable(model, processing_class.pad_token_id))
        self.layer_cache = why is None
        if why:
            layer_cache.logger.info("cache_frozen_layers: off (%s)", why)
        self.int8 = None
        if args.sampling_weights == "int8":
            if self.accelerator.device.type != "cpu" or self.is_deepspeed_enabled:
                raise ValueError("sampling_weights int8 is for the CPU, without DeepSpeed")
            self.int8 = Int8Sampling(model.policy)

    # -- data order: a function of the update number alone, so --resume replays the same batches
    def prompts_for(self, update: int) -> list:
        """This process's prompts for `update`. Each pass over the prompts is one seeded permutation cut into
        global batches (every process's share side by side); the N mod global-batch left over go unused in
        that pass, as with TRL's drop_last loader, so every process gets a full share and no prompt comes
        twice in a pass."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        epoch, k = divmod(update, self.updates_per_pass)
        order = torch.randperm(len(self.prompts), generator=torch.Generator().manual_seed(self.args.seed + epoch))
        start = (k * world + rank) * self.args.local_batch_size
        idx = order[start:start + self.args.local_batch_size].tolist()
        return [self.prompts[i] for i in idx]

    @property
    def updates_per_pass(self) -> int:
        return len(self.prompts) // (self.args.local_batch_size * self.accelerator.num_processes)

    @contextlib.contextmanager
    def gathered(self):
        """The trained module unwrapped for generation and scoring. Under DeepSpeed ZeRO-3 every process must
        enter together: the partitioned weights (trained and frozen) are gathered whole for the block, and
        DeepSpeed's per-module fetch hooks are off; otherwise a plain unwrap."""
        with (unwrap_model_for_generation(self.model, self.accelerator) as model,
              DistributedBackend(self.accelerator).gather_params(self.roles.frozen_parameters())):
            yield model

    # -- 1. rollout
    @torch.no_grad()
    def rollout(self, prompts: list) -> Rollout:
        # accelerate puts autocast around the prepared module's forward only; generate(), the value
        # model and the reference are called on submodules, so without this block the old log-probs
        # and values would be fp32 while the PPO epochs compute the new ones in bf16 (ratio != 1)
        with self.gathered() as model, self.accelerator.autocast():
            return self._rollout(model, prompts)

    def _rollout(self, model, prompts: list) -> Rollout:
        args = self.args
        model.eval()
        T = args.temperature
        # In fp32, generate() already computed the policy's logits (and, for a shared value head, the hidden
        # states it reads): the old log-probs and values come from there, saving a forward. Under mixed
        # precision they come from the training forward itself: generate()'s one-token steps round
        # differently in bf16 than a full forward, so the ratio would not start at 1.
        forward = (args.generation_engine == "continuous_batching" or self.accelerator.mixed_precision != "no"
                   or self.int8 is not None)  # int8: the sampler's logits are not the policy's
        if args.generation_engine == "continuous_batching":  # the engine returns tokens only
            samples = sample_continuous(model.policy, self.tokenizer, prompts, self.generation_config,
                                        args.max_prompt_length)
        else:
            with self.int8.swapped() if self.int8 else contextlib.nullcontext():
                samples = sample(model.policy, self.tokenizer, prompts, self.generation_config,
                                 args.max_prompt_length, with_logprobs=not forward,
                                 with_hidden=model.shared and not forward)
        # with the layer cache, the states entering each network's first trained layer are computed once
        # here, for the values, the reference and all PPO epochs
        frozen = model.frozen_hidden(samples.input_ids, samples.attention_mask) if self.layer_cache else None
        if forward:
            logits, values = model(samples.input_ids, samples.attention_mask, samples.context_length, frozen=frozen)
            logprobs = answer_logprobs(logits, samples.responses, T)
        else:
            logprobs = samples.logprobs
            if model.shared:
                values = model.head_values(samples.hidden)
            else:
                values = model.token_values(samples.input_ids, samples.attention_mask, samples.context_length,
                                            frozen and frozen["value"])
        with self.roles.reference() as reference:
            if frozen and self.roles.ref_model is None:  # the reference is the policy, adapter off: same lower layers
                ref_logits, _ = model(samples.input_ids, samples.attention_mask, samples.context_length,
                                      with_values=False, frozen=frozen)
                ref_logprobs = answer_logprobs(ref_logits, samples.responses, T)
            else:
                ref_logprobs = response_logprobs(reference, samples, T)
        answers = samples.answers(self.tokenizer)
        scores = torch.tensor(self.reward_scores(prompts, answers, samples.ended.tolist()), device=values.device)
        return Rollout(samples, logprobs, ref_logprobs, values.float(), scores, answers, frozen)

    def reward_scores(self, prompts: list, answers: list[str], ended: list[bool]) -> list[float]:
        """The reward model's normalised scores, through the same `RewardScorer` every stage uses (here, or
        behind a served model's URL: it gets the same decoded text and renders it with its own tokenizer)."""
        how = {"aggregation": self.args.reward_aggregation, "uncertainty_coef": self.args.uncertainty_coef}
        if self.reward_scorer is not None:
            return self.reward_scorer.score(prompts, answers, ended, **how)
        gain, bias = self.reward_normalization
        with self.roles.reward() as reward_model:
            scorer = RewardScorer(reward_model, self.reward_tokenizer, gain, bias, self.reward_max_length,
                                  self.member_normalization)
            return scorer.score(prompts, answers, ended, **how)

    # -- 2 and 3. rewards, advantages
    def advantages(self, ro: Rollout) -> None:
        """Sets the rollout's per-token rewards' parts, advantages and returns."""
        args, mask = self.args, ro.samples.mask
        scores = ro.scores.clone()
        if args.missing_eos_penalty is not None:
            scores[~ro.samples.ended] -= args.missing_eos_penalty
        kl = M.kl_per_token(ro.logprobs, ro.ref_logprobs, args.kl_estimator) * mask  # (B, R)
        rewards, non_score = M.shaped_rewards(scores, kl, mask, self.kl_ctl.value)
        # whitening statistics over the global batch, so N processes train as one would
        sum_all = None if self.accelerator.num_processes == 1 else lambda t: self.accelerator.reduce(t, "sum")
        if args.whiten_rewards:
            rewards = M.masked_whiten(rewards, mask, shift_mean=False, sum_all=sum_all)
        advantages, returns = M.gae(rewards, ro.values, mask, args.gamma, args.lam)
        ro.penalised_scores, ro.kl, ro.non_score = scores, kl, non_score
        ro.advantages, ro.returns = M.masked_whiten(advantages, mask, sum_all=sum_all), returns

    # -- 4. PPO epochs
    def optimize(self, ro: Rollout) -> dict[str, float]:
        args, samples = self.args, ro.samples
        B = samples.responses.shape[0]
        mini = B // args.num_mini_batches
        micro = args.per_device_train_batch_size
        input_ids, attention_mask, Q = samples.input_ids, samples.attention_mask, samples.context_length
        frozen = ro.frozen or {}
        self.model.train()
        stats: dict[str, list[float]] = {}
        # a DeepSpeed engine divides by its own gradient_accumulation_steps in backward()
        accumulation = 1 if self.is_deepspeed_enabled else args.gradient_accumulation_steps
        for _ in range(args.num_ppo_epochs):
            order = torch.randperm(B)
            for m0 in range(0, B, mini):
                for u0 in range(m0, m0 + mini, micro):
                    idx = order[u0:u0 + micro]
                    mask = samples.mask[idx]
                    logits, values = self.model(input_ids[idx], attention_mask[idx], Q,
                                                frozen={k: h[idx] for k, h in frozen.items()})
                    new_logprobs, entropy = answer_logprobs_and_entropy(logits, samples.responses[idx],
                                                                        args.temperature)
                    pg_loss, pg = M.policy_loss(new_logprobs, ro.logprobs[idx], ro.advantages[idx], mask,
                                                args.cliprange)
                    vf_loss, vf = M.value_loss(values.float(), ro.values[idx], ro.returns[idx], mask,
                                               args.cliprange_value)
                    loss = pg_loss + args.vf_coef * vf_loss
                    if args.ptx_coef and self.ptx_batches is not None:
                        ptx = self.ptx_loss(next(self.ptx_batches))
                        loss = loss + args.ptx_coef * ptx
                        stats.setdefault("loss/ptx", []).append(ptx.item())
                    self.accelerator.backward(loss / accumulation)
                    for key, value in (("loss/policy", pg_loss), ("loss/value", vf_loss),
                                       ("policy/clipfrac", pg["clipfrac"]), ("policy/approxkl", pg["approxkl"]),
                                       ("policy/ratio", pg["ratio"]), ("value/clipfrac", vf["clipfrac"]),
                                       ("policy/entropy", M.masked_mean(entropy, mask))):
                        stats.setdefault(key, []).append(float(value.detach()))
                if args.max_grad_norm:
                    self.accelerator.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
        self.model.eval()
        return {k: sum(v) / len(v) for k, v in stats.items()}

    def ptx_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean next-token NLL of the policy on demonstration answers (labels -100 elsewhere)."""
        policy = self.accelerator.unwrap_model(self.model).policy
        with self.accelerator.autocast():  # a submodule call: outside the prepared forward's autocast
            return policy(**{k: v.to(self.accelerator.device) for k, v in batch.items()}, use_cache=False).loss

    def step(self, update: int) -> dict[str, float]:
        """One PPO update; returns its metrics."""
        # sampling is reproducible per update (resume), and each process draws its own answers
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        torch.manual_seed((self.args.seed * 100003 + update) * world + rank)
        start = time.perf_counter()
        prompts = self.prompts_for(update)
        ro = self.rollout(prompts)
        rollout_s = time.perf_counter() - start
        self.advantages(ro)
        train_stats = self.optimize(ro)
        seconds = time.perf_counter() - start

        mask, ended = ro.samples.mask, ro.samples.ended
        kl_seq = self._mean((ro.logprobs - ro.ref_logprobs).mul(mask).sum(1))
        k3_seq = self._mean(M.kl_per_token(ro.logprobs, ro.ref_logprobs, "k3").mul(mask).sum(1))
        non_score = self._mean(ro.non_score.sum(1))
        tokens = self._mean(mask.sum(1).float())
        # The simulated reviewers' rule-based preference (ranktune.gold): the "gold" reward beside the
        # proxy, meaningful when the labels came from simulated reviewers (Gao et al. 2022).
        gold = torch.tensor([gold_score(prompt_text(p), ans, bool(e))
                             for p, ans, e in zip(prompts, ro.answers, ended)], device=mask.device)
        metrics = {
            "objective/scores": self._mean(ro.scores), "objective/gold": self._mean(gold),
            "objective/kl": kl_seq, "objective/kl_k3": k3_seq,
            "objective/non_score_reward": non_score,
            "objective/rlhf_reward": self._mean(ro.penalised_scores) + non_score,
            "value/explained_variance": M.explained_variance(ro.values, ro.returns, mask),
            "answers/length": tokens, "answers/ended": self._mean(ended.float()),
            **train_stats, "kl_coef": self.kl_ctl.value, "lr": self.lr_scheduler.get_last_lr()[0],
            "episodes_per_second": len(prompts) * self.accelerator.num_processes / seconds,
            "tokens_per_second": tokens * len(prompts) * self.accelerator.num_processes / seconds,
            "rollout_seconds": rollout_s, "update_seconds": seconds,
        }
        self.kl_ctl.update(kl_seq, self.args.local_batch_size * self.accelerator.num_processes)
        if self.args.sample_every and update % self.args.sample_every == 0 and self.accelerator.is_main_process:
            self.samples_log.extend({"update": update, "prompt": p, "answer": ans, "score": float(s),
                                     "ended": bool(e)} for p, ans, s, e in
                                    zip(prompts, ro.answers, ro.scores, ended))
        return metrics

    def _mean(self, x: torch.Tensor) -> float:
        return self.accelerator.gather_for_metrics(x.detach().float().reshape(-1)).mean().item()

    # -- the loop
    def train(self, resume_from: str | None = None):
        """Run all updates (from a checkpoint's update count when resuming); returns the log history."""
        from rlhf.checkpoint import load_checkpoint, save_checkpoint

        first = 0
        if resume_from is not None:
            first = load_checkpoint(self, resume_from)
            if self.args.ptx_coef and self.ptx_batches is not None:
                # the demonstration stream is seeded, not saved: replay it to where the stopped run was
                # (one batch per micro-batch), so a resumed run trains on the batches it would have
                args = self.args
                used = first * args.num_ppo_epochs * args.num_mini_batches * args.gradient_accumulation_steps
                for _ in range(used):
                    next(self.ptx_batches)
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        if self.is_deepspeed_enabled:  # DeepSpeed regroups the parameters (empty groups go): schedule its groups
            self.lr_scheduler = None
            self.create_scheduler(self.optimizer_steps, self.optimizer)
        self.state.max_steps = self.num_updates
        self.state.global_step = first
        self.state.logging_steps, self.state.save_steps = self.args.logging_steps, self.args.save_steps
        self.control = self.callback_handler.on_train_begin(self.args, self.state, self.control)
        for update in range(first, self.num_updates):
            self.control = self.callback_handler.on_step_begin(self.args, self.state, self.control)
            metrics = self.step(update)
            self.state.global_step = update + 1
            self.state.epoch = (update + 1) / self.updates_per_pass  # passes over the prompts, on any world size
            if (update + 1) % max(1, int(self.args.logging_steps)) == 0 or update + 1 == self.num_updates:
                self.log({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()})
            if self.args.save_steps and (update + 1) % int(self.args.save_steps) == 0 and update + 1 < self.num_updates:
                save_checkpoint(self, update + 1)
            self.control = self.callback_handler.on_step_end(self.args, self.state, self.control)
        self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)
        return self.state.log_history
