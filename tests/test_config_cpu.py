"""On a CPU, stage configs default bf16 off; asked for anyway on a CPU without bf16 arithmetic, the
parse says once, before any training, that it will be emulated and slow."""

from __future__ import annotations

import pytest
from transformers import TrainingArguments

from ranktune import config


@pytest.mark.parametrize("native, asked, warned", [(False, True, True), (True, True, False), (False, False, False)])
def test_bf16_on_a_cpu_without_it_is_a_warning(native, asked, warned, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, "_native_cpu_bf16", lambda: native)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    [args] = config.parse_config((TrainingArguments,), ["--output_dir", str(tmp_path)]
                                 + (["--bf16", "true"] if asked else []))
    assert args.bf16 is asked
    err = capsys.readouterr().err
    assert ("bf16 on this CPU" in err and "set --bf16 false" in err and err.count("\n") == 1) is warned, err


def test_the_cpu_default_is_fp32(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    [args] = config.parse_config((TrainingArguments,), ["--output_dir", str(tmp_path)])
    assert args.bf16 is False
