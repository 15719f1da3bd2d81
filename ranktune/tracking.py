"""Experiment trackers, `--report_to` the Hugging Face way: `none` (the configs' default: offline, nothing
written), or any integration transformers knows (`tensorboard`, `trackio`, `wandb`, `mlflow`, ..., `all`).

Every training stage is a `transformers.Trainer` (our PPO included), so its logs reach the trackers through
the Trainer's callbacks. TensorBoard's default folder would be inside `<stage>.work/`, which is removed once
the stage publishes; its event files go to `runs/<run>/logs/<stage>/<time>/` instead (one folder per start,
`tensorboard --logdir runs/<run>/logs`), unless TENSORBOARD_LOGGING_DIR names another.
"""

from __future__ import annotations

import time
from pathlib import Path

from ranktune.errors import InputError
from ranktune.runs import run_dir


def check_report_to(args) -> None:
    """Fail in a second, before any model loads, on a tracker transformers does not know or cannot import."""
    from transformers.integrations import is_tensorboard_available
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = args.report_to or []
    unknown = [n for n in names if n not in INTEGRATION_TO_CALLBACK]
    if unknown:
        raise InputError(f"unknown tracker(s) {', '.join(unknown)}; one of: none, all, "
                         f"{', '.join(INTEGRATION_TO_CALLBACK)} (several: a YAML list, report_to: [tensorboard, wandb])",
                         field="report_to")
    if "tensorboard" in names and not is_tensorboard_available():
        raise InputError("tensorboard is not installed (pip install 'ranktune[tensorboard]')", field="report_to")


def tracker_dir(run: str, stage: str, runs_dir: str | Path) -> Path:
    return run_dir(run, runs_dir) / "logs" / stage / time.strftime("%Y%m%d-%H%M%S")


def point_trackers(trainer, folder: Path) -> None:
    """Send the trainer's TensorBoard events to `folder` (other trackers keep their own places)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = str(folder)
