"""Sampling throughput: transformers' generate() (KV cache, one padded batch) against its paged
continuous batching, on the same prompts, model and settings, one after the other in one process.

    python benchmarks/generation_engines.py --policy runs/demo/sft --prompts 32 --max_new_tokens 48

Prints answers/s and new tokens/s for each engine (best of `--repeats`), with the device named.
This is what `--generation_engine` (PPO) and `--engine` (labeling_ui generate) choose between.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", default="smollm2-135m")
    p.add_argument("--prompts_file", default="data/prompts.jsonl")
    p.add_argument("--prompts", type=int, default=32, help="answers per run (one per prompt)")
    p.add_argument("--max_new_tokens", type=int, default=48)
    p.add_argument("--batch_size", type=int, default=32, help="prompts per generate() call")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is one)")
    a = p.parse_args()

    import torch

    from ranktune.models import load_causal_lm
    from ranktune.records import read_prompts
    from ranktune.sampling import sample, sample_continuous, sampling_config

    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model, tokenizer = load_causal_lm(a.policy, dtype=dtype)
    model.to(device).eval()
    prompts = [r["prompt"] for r in read_prompts(a.prompts_file)][:a.prompts]
    config = sampling_config(tokenizer, a.max_new_tokens, 0.7)
    name = torch.cuda.get_device_name() if device == "cuda" else f"{platform.processor() or 'CPU'}, " \
                                                                 f"{torch.get_num_threads()} threads"
    print(f"{a.policy} on {device} ({name}), {len(prompts)} prompts, {a.max_new_tokens} new tokens, T=0.7")

    def run_generate():
        n = 0
        for i in range(0, len(prompts), a.batch_size):
            n += int(sample(model, tokenizer, prompts[i:i + a.batch_size], config).mask.sum())
        return n

    def run_continuous():
        return int(sample_continuous(model, tokenizer, prompts, config).mask.sum())

    for engine, fn in (("generate", run_generate), ("continuous_batching", run_continuous)):
        best = None
        for _ in range(a.repeats):
            torch.manual_seed(0)
            start = time.perf_counter()
            tokens = fn()
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            best = min(best or (seconds, tokens), (seconds, tokens))
        seconds, tokens = best
        print(f"{engine:<20} {len(prompts) / seconds:8.2f} answers/s {tokens / seconds:9.1f} new tokens/s "
              f"({seconds:.1f} s, {tokens} tokens)", flush=True)


if __name__ == "__main__":
    main()
