"""The run folder: where each stage reads its inputs and publishes its outputs.

    runs/<name>/
        sft/            model folder + metrics.json + loss.png   (published atomically)
        sft.work/       checkpoints while training; kept for --resume after a crash
        labels.db       the label store (SQLite, WAL)
        export/         the labeling export (datasets + JSONL)
        reward/         reward model folder + normalization + metrics
        rlhf/           PPO policy folder + metrics
        report.html

A stage never exposes a half-written output: it builds the folder under a temporary name and
renames it into place only when everything is written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable, Iterator

from ranktune.errors import InputError

DEFAULT_RUNS_DIR = "runs"
MIN_FREE_BYTES = 2 * 1024**3  # a 135M model folder and its checkpoints need about this much


def run_dir(name: str, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise InputError(f"run name '{name}' must be a plain folder name", field="run_name")
    return Path(runs_dir) / name


def stage_dir(name: str, stage: str, runs_dir: str | Path = DEFAULT_RUNS_DIR) -> Path:
    return run_dir(name, runs_dir) / stage


def work_dir(final: Path) -> Path:
    """Where a stage keeps checkpoints while it trains (beside its final folder)."""
    return final.with_name(final.name + ".work")


def trainer_checkpoint(folder: Path) -> str | None:
    """The last `transformers.Trainer` checkpoint in `folder`, if any."""
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def resume_point(work: Path, resume: bool, find: Callable[[Path], str | None] = trainer_checkpoint) -> str | None:
    """The checkpoint to continue from when `resume` is asked for; otherwise (or when there is none)
    the stale checkpoints of an earlier, abandoned run are cleared so they cannot be mixed in."""
    found = find(work) if resume else None
    if resume and found is None:
        print(f"note: no checkpoint in {work}; starting from the beginning")
    if found is None and work.exists():
        shutil.rmtree(work, ignore_errors=True)
    return found


def upstream_model(explicit: str | None, run: str, runs_dir: str | Path, stage: str = "sft") -> str:
    """An explicit model wins; else this run's `stage` output (the SFT model); else the bundled default."""
    from ranktune.models import DEFAULT_MODEL

    if explicit:
        return explicit
    folder = stage_dir(run, stage, runs_dir)
    if (folder / "config.json").is_file():
        return str(folder)
    print(f"note: no {stage.upper()} model at {folder}; starting from {DEFAULT_MODEL}")
    return DEFAULT_MODEL


def check_writable(folder: Path, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Fail before any work starts when the run folder cannot be written or the disk is full."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise InputError(f"cannot write here ({err.strerror or err})", folder) from None
    free = shutil.disk_usage(folder).free
    if free < min_free_bytes:
        raise InputError(f"only {free / 1024**3:.1f} GiB free on this disk; need at least "
                         f"{min_free_bytes / 1024**3:.1f} GiB", folder)


@contextlib.contextmanager
def publish_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `final`; on success it replaces `final` in one rename.

    On an exception the temporary folder is removed and any earlier `final` stays as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_folder(tmp, final)


def publish_folder(src: Path, final: Path) -> None:
    """Move a complete folder `src` into place as `final` (same file system), replacing any old one."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(final, old)
    os.rename(src, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def publish_policy(policy, tokenizer, work: Path, final: Path, metrics: dict, history: list[dict],
                   curves: list[str], plot_name: str, title: str, extra_jsonl: dict[str, list[dict]] | None = None,
                   card: dict | None = None) -> Path:
    """A tuned policy's whole output folder, built beside the checkpoints in `work` and renamed into
    place (a crash at any point leaves no half-written `final`); then the checkpoints go.

    Writes the model (LoRA merged: a plain folder any stage loads), its tokenizer, metrics.json,
    metrics.jsonl (`history`), a plot of `curves`, each non-empty list of `extra_jsonl`, and with `card`
    (`ranktune.model_card.write_model_card`'s stage, configs and data) a README.md model card."""
    from ranktune.jsonl import write_json_atomic, write_jsonl_atomic
    from ranktune.plots import plot_curves

    staging = work / "final-model"
    if staging.exists():
        shutil.rmtree(staging)
    if hasattr(policy, "merge_and_unload"):
        policy = policy.merge_and_unload()
    policy.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    write_json_atomic(staging / "metrics.json", metrics)
    write_jsonl_atomic(staging / "metrics.jsonl", history)
    for name, rows in (extra_jsonl or {}).items():
        if rows:
            write_jsonl_atomic(staging / name, rows)
    if history:
        plot_curves(history, curves, staging / plot_name, title=title)
    if card is not None:
        from ranktune.model_card import write_model_card

        write_model_card(staging, metrics=metrics, final=final, **card)
    publish_folder(staging, final)
    shutil.rmtree(work, ignore_errors=True)
    return final
