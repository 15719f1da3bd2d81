"""Model specs resolve to loadable models with a pad token distinct from EOS."""

import pytest
import torch

from ranktune.errors import InputError
from ranktune.models import DEFAULT_MODEL, load_causal_lm, load_sequence_classifier, load_tokenizer, resolve_model_path
from ranktune.prompting import render_answer, render_prompt


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_pad_differs_from_eos_and_model_agrees(request, fixture):
    folder = request.getfixturevalue(fixture)
    model, tok = load_causal_lm(str(folder))
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.get_input_embeddings().weight.shape[0] >= len(tok)
    batch = tok(["hi", "a longer text here"], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape


def test_gpt2_without_chat_template_gets_a_plain_instruction_format(tiny_gpt2):
    tok = load_tokenizer(str(tiny_gpt2))
    text = render_prompt(tok, "Name a colour.")
    assert text.startswith("### Instruction:\nName a colour.") and text.endswith("### Response:\n")
    assert render_answer(tok, "Blue.") == "Blue." + tok.eos_token


def test_chat_template_is_used_when_present(tiny_llama):
    tok = load_tokenizer(str(tiny_llama))
    assert render_prompt(tok, "Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    multi = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    assert render_prompt(tok, multi).count("<|im_start|>") == 4


def test_sequence_classifier_from_causal_lm_folder(tiny_llama):
    model, tok = load_sequence_classifier(str(tiny_llama))
    assert model.config.num_labels == 1 and model.config.pad_token_id == tok.pad_token_id


def test_missing_local_folder_and_offline_hub_id_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(InputError, match="model folder not found"):
        resolve_model_path(str(tmp_path / "runs" / "x" / "sft"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError) as err:
        load_tokenizer("some-org/definitely-not-cached-model")
    assert DEFAULT_MODEL in str(err.value) and "offline" in str(err.value)


@pytest.mark.e2e
def test_bundled_smollm2_loads_from_the_gguf_package_with_endoftext_pad():
    model, tok = load_causal_lm(DEFAULT_MODEL)
    assert tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 0
    assert tok.eos_token == "<|im_end|>"
    assert model.config.model_type == "llama"
    assert sum(p.numel() for p in model.parameters()) > 100e6
    prompt = tok(render_prompt(tok, "What is the capital of France?"), return_tensors="pt")
    out = model.generate(**prompt, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert "Paris" in tok.decode(out[0, prompt["input_ids"].shape[1]:])
