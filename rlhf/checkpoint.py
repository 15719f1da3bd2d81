"""PPO checkpoints: everything needed to continue as if never stopped, written atomically.

A checkpoint folder holds the trained parameters (the adapters and value head with LoRA, or
all trained weights), the optimizer and scheduler, the KL coefficient, the update count and the
log so far. It is written under a temporary name and renamed, so a kill leaves the last good
checkpoint as it was. Data order and sampling are functions of the update number, so a resumed
run sees the same prompts and draws as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
from trl.distributed import DistributedBackend

PREFIX = "checkpoint-"


def _trainable_state(model: torch.nn.Module, accelerator=None) -> dict[str, torch.Tensor]:
    """The trained parameters, whole: under DeepSpeed ZeRO-3 they are gathered from every process (so every
    process must call this), and copied before they are partitioned again."""
    trained = [p for p in model.parameters() if p.requires_grad]
    with DistributedBackend(accelerator).gather_params(trained) if accelerator else contextlib.nullcontext():
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items() if k in names}


def save_checkpoint(trainer, update: int) -> Path | None:
    trainer.accelerator.wait_for_everyone()
    weights = _trainable_state(trainer.accelerator.unwrap_model(trainer.model), trainer.accelerator)
    if not trainer.accelerator.is_main_process:
        return None
    root = Path(trainer.args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{PREFIX}{update}.", dir=root))
    torch.save(weights, tmp / "trainable.pt")
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
    if trainer.is_deepspeed_enabled:
        # the optimizer's state is partitioned across processes (and the weights too, under ZeRO-3 with
        # zero3_init_flag): this folder's single optimizer.pt cannot restore it
        raise ValueError(f"{folder}: resuming PPO under DeepSpeed is not supported; start the run afresh")
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
