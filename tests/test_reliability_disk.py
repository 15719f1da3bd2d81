"""An unwritable or full run folder: the labeling commands stop with one clear line (the folder,
the reason, the free space) before any work starts, and leave nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ranktune.errors import InputError
from ranktune.runs import check_writable

REPO = Path(__file__).resolve().parent.parent


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "labeling_ui", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})


def _one_line_error(out: subprocess.CompletedProcess, *needles: str) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_generate_and_export_refuse_an_unwritable_run_folder_before_any_work(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "hi"}) + "\n")
    blocker = tmp_path / "runs"  # a file where the runs folder should be: unwritable even for root
    blocker.write_text("not a folder")
    out = _cli("generate", "--runs_dir", str(blocker), "--run", "r", "--prompts", str(prompts),
               "--policy", str(tmp_path / "no-such-model"), cwd=tmp_path)
    # The folder check comes first: a missing model would be the next complaint, and none is made.
    _one_line_error(out, str(blocker / "r"), "cannot write here")
    assert "no-such-model" not in out.stderr and blocker.read_text() == "not a folder"

    out = _cli("export", "--runs_dir", str(tmp_path / "fine"), "--run", "r", "--out", str(blocker / "export"),
               cwd=tmp_path)
    _one_line_error(out, str(blocker), "cannot write here")
    assert not (tmp_path / "fine").exists()  # nothing was created on the way to the error


def test_a_full_disk_is_refused_with_the_free_space(tmp_path):
    with pytest.raises(InputError, match=r"only \d+\.\d GiB free on this disk; need at least 1048576\.0 GiB"):
        check_writable(tmp_path / "run", min_free_bytes=1024**5)


def test_generate_on_a_really_full_disk(tmp_path):
    """A 1 MiB tmpfs (root only): generate names the folder and the free space, and writes nothing."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()[:120]}")
    try:
        prompts = tmp_path / "prompts.jsonl"
        prompts.write_text(json.dumps({"prompt": "hi"}) + "\n")
        out = _cli("generate", "--runs_dir", str(mnt), "--run", "r", "--prompts", str(prompts), cwd=tmp_path)
        _one_line_error(out, str(mnt / "r"), "GiB free on this disk")
        assert not (mnt / "r" / "labels.db").exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
