"""int8 sampling weights (ranktune/quantize.py): a copy for sampling, the model itself untouched."""

import json

import pytest
import torch
from sqlalchemy import select

from labeling_ui.cli import main as label_main
from labeling_ui.db import sqlite_url
from labeling_ui.schema import Candidate
from labeling_ui.store import LabelStore
from ranktune.models import load_causal_lm
from ranktune.quantize import int8_copy, sampling_model
from ranktune.sampling import tokenize_prompts


def test_the_int8_copy_is_close_and_leaves_the_model_as_it_was(tiny_llama):
    model, tokenizer = load_causal_lm(str(tiny_llama))
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy = int8_copy(model)
    quantized = [m for m in copy.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantized) == sum(isinstance(m, torch.nn.Linear) for m in model.modules()) > 0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items()), "the model is not changed"
    assert not any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in model.modules())
    queries, mask = tokenize_prompts(tokenizer, ["Hi there", "Write a long poem about the sea"])
    with torch.no_grad():
        exact = model(input_ids=queries, attention_mask=mask).logits[:, -1]  # (B, V)
        cheap = copy(input_ids=queries, attention_mask=mask).logits[:, -1]
    assert not torch.equal(exact, cheap), "the copy really computes in int8"
    for e, c in zip(exact, cheap):  # the same next-token distribution, up to rounding
        assert torch.corrcoef(torch.stack([e, c]))[0, 1] > 0.99
    assert sampling_model(model, "fp32") is model


def test_generate_with_int8_weights_writes_items_and_says_so(tmp_path, tiny_llama, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Write about topic {i}."}) + "\n" for i in range(4)))
    common = ["generate", "--runs_dir", str(tmp_path / "runs"), "--policy", str(tiny_llama), "--prompts",
              str(prompts), "--k", "2", "--max_new_tokens", "5"]
    stats = label_main([*common, "--run", "q", "--sampling_weights", "int8"])
    assert (stats["items_written"], stats["sampling_weights"]) == (4, "int8")
    store = LabelStore(sqlite_url(tmp_path / "runs" / "q" / "labels.db"))
    with store.db.read() as s:  # each answer says how it was sampled
        assert {c.generation["sampling_weights"] for c in s.scalars(select(Candidate)).all()} == {"int8"}
    for bad, says in ((["--sampling_weights", "int4"], "must be one of fp32, int8, got 'int4'"),
                      (["--sampling_weights", "int8", "--engine", "continuous_batching"], "engine generate only")):
        capsys.readouterr()
        with pytest.raises(SystemExit):
            label_main([*common, "--run", "bad", *bad])
        err = capsys.readouterr().err
        assert says in err and "sampling_weights" in err and "Traceback" not in err
