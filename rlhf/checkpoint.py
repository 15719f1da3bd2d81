"""PPO checkpoints: everything needed to continue as if never stopped, written atomically.

A checkpoint folder holds the trained parameters (the adapters and value head with LoRA, or
all trained weights), the optimizer and scheduler, the KL coefficient, the update count and the
log so far. It is written under a temporary name and renamed, so a kill leaves the last good
checkpoint as it was. Data order and sampling are functions of the update number, so a resumed
run sees the same prompts and draws as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch

PREFIX = "checkpoint-"


def _trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().cpu() for k, v in model.state_dict().items() if k in names}


def save_checkpoint(trainer, update: int) -> Path | None:
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:
        return None
    root = Path(trainer.args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{PREFIX}{update}.", dir=root))
    model = trainer.accelerator.unwrap_model(trainer.model)
    torch.save(_trainable_state(model), tmp / "trainable.pt")
    torch.save(trainer.optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(trainer.lr_scheduler.state_dict(), tmp / "scheduler.pt")
    state = {"update": update, "kl_coef": trainer.kl_ctl.value, "log_history": trainer.state.log_history,
             "samples": trainer.samples_log}
    (tmp / "state.json").write_text(json.dumps(state))
    final = root / f"{PREFIX}{update}"
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in checkpoints(root)[:-max(1, trainer.args.save_total_limit or 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints in `root`, oldest first (temporary folders are never listed)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and re.fullmatch(rf"{PREFIX}\d+", p.name)
             and (p / "state.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def last_checkpoint(root: str | Path) -> str | None:
    found = checkpoints(root)
    return str(found[-1]) if found else None


def load_checkpoint(trainer, folder: str | Path) -> int:
    """Restore a checkpoint into `trainer`; returns the number of updates already done."""
    folder = Path(folder)
    model = trainer.accelerator.unwrap_model(trainer.model)
    saved = torch.load(folder / "trainable.pt", map_location="cpu", weights_only=True)
    expected = set(_trainable_state(model))
    if set(saved) != expected:
        raise ValueError(f"{folder}: checkpoint does not match this model's trainable parameters "
                         "(different LoRA or value_model settings?)")
    model.load_state_dict(saved, strict=False)
    trainer.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    trainer.lr_scheduler.load_state_dict(torch.load(folder / "scheduler.pt", map_location="cpu", weights_only=True))
    state = json.loads((folder / "state.json").read_text())
    trainer.kl_ctl.value = state["kl_coef"]
    trainer.state.log_history = state["log_history"]
    trainer.samples_log = state.get("samples", [])
    return int(state["update"])
