"""Tests of kinema.text with the real bundled MiniLM (and a tiny random T5 encoder folder)."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from kinema.errors import InvalidInputError, ModelLoadError
from kinema.text import (
    CachedTextEncoder,
    TextEmbedding,
    TextEncoder,
    TextEncoderConfig,
    resolve_model_path,
)

PROMPTS = [
    "a small red ball moves left on a light background",
    "",
    "a large blue square falls and bounces on the floor, then a green triangle is thrown",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return TextEncoder(TextEncoderConfig())


def test_shapes_mask_and_dtype(encoder: TextEncoder) -> None:
    emb = encoder.encode(PROMPTS)
    lengths = [len(ids) for ids in encoder.tokenize(PROMPTS)]
    assert emb.states.shape == (3, max(lengths), 384)
    assert emb.states.dtype == torch.float32 and emb.mask.dtype == torch.bool
    assert emb.lengths.tolist() == lengths
    assert lengths[1] == 2  # the empty prompt is [CLS] [SEP]
    assert not emb.states.requires_grad
    assert bool(torch.isfinite(emb.states).all())
    # padding positions are zero, real ones are not
    assert emb.states[~emb.mask].abs().sum().item() == 0.0
    assert bool((emb.states[emb.mask].abs().sum(-1) > 0).all())
    assert encoder.dim == 384


def test_deterministic_and_batch_invariant(encoder: TextEncoder) -> None:
    batch = encoder.encode(PROMPTS)
    again = encoder.encode(PROMPTS)
    assert torch.equal(batch.states, again.states) and torch.equal(batch.mask, again.mask)
    for i, prompt in enumerate(PROMPTS):
        alone = encoder.encode([prompt])
        n = alone.length
        assert torch.equal(alone.states[0], batch.states[i, :n])  # bit for bit
    reordered = encoder.encode(PROMPTS[::-1])
    assert torch.equal(reordered.states[2, : batch.lengths[0]], batch.states[0, : batch.lengths[0]])


def test_different_prompts_differ(encoder: TextEncoder) -> None:
    emb = encoder.encode(["a red ball moves left", "a red ball moves right"])
    assert emb.lengths[0] == emb.lengths[1]
    assert (emb.states[0] - emb.states[1]).abs().max().item() > 1e-2


def test_batched_mode_matches_within_noise() -> None:
    fast = TextEncoder(TextEncoderConfig(batch_invariant=False))
    exact = TextEncoder(TextEncoderConfig())
    prompts = [f"a {c} ball moves {d}" for c in ("red", "blue", "green") for d in ("left", "up")]
    prompts += ["", "a tiny cyan triangle"]
    a, b = fast.encode(prompts), exact.encode(prompts)
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.states, b.states, atol=1e-4, rtol=1e-4)


def test_truncation_warns(encoder: TextEncoder, caplog: pytest.LogCaptureFixture) -> None:
    short = TextEncoder(TextEncoderConfig(max_length=8))
    with caplog.at_level(logging.WARNING, logger="kinema.text.encoder"):
        long_prompt = "a red ball and a blue square and a green triangle move left"
        emb = short.encode([long_prompt, "a ball"])
    assert emb.lengths.tolist() == [8, 4]
    assert "truncated from" in caplog.text and "to 8 tokens" in caplog.text


def test_bad_prompts_rejected(encoder: TextEncoder) -> None:
    with pytest.raises(InvalidInputError, match="list of strings"):
        encoder.encode("a red ball")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="empty list"):
        encoder.encode([])
    with pytest.raises(InvalidInputError, match="max_length=1"):
        TextEncoderConfig(max_length=1)


def test_missing_or_broken_folder_raises(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_model"
    with pytest.raises(ModelLoadError, match="no_such_model.*does not exist.*config.json"):
        TextEncoder(TextEncoderConfig(path=str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        TextEncoder(TextEncoderConfig(path=str(empty)))
    broken = tmp_path / "broken"
    shutil.copytree(resolve_model_path(None), broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelLoadError, match="broken"):
        TextEncoder(TextEncoderConfig(path=str(broken)))


def test_incomplete_weights_or_tokenizer_raise(tmp_path: Path) -> None:
    source = resolve_model_path(None)
    partial = tmp_path / "partial"
    shutil.copytree(source, partial)
    weights = load_file(source / "model.safetensors")
    del weights["encoder.layer.0.attention.self.query.weight"]
    save_file(weights, partial / "model.safetensors")
    with pytest.raises(ModelLoadError, match="lack 1 parameters.*query.weight"):
        TextEncoder(TextEncoderConfig(path=str(partial)))
    no_vocab = tmp_path / "no_vocab"
    no_vocab.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(source / name, no_vocab / name)
    with pytest.raises(ModelLoadError, match="no tokenizer vocabulary"):
        TextEncoder(TextEncoderConfig(path=str(no_vocab)))


def test_dim_mismatch_raises() -> None:
    with pytest.raises(ModelLoadError, match="hidden size 384.*dim=512"):
        TextEncoder(TextEncoderConfig(dim=512))


def test_t5_encoder_folder(tmp_path: Path) -> None:
    """Any local encoder folder works: a tiny random T5 (encoder half) with MiniLM's tokenizer."""
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, pad_token_id=0
    )
    T5EncoderModel(config).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(resolve_model_path(None) / name, tmp_path / name)
    enc = TextEncoder(TextEncoderConfig(path=str(tmp_path), dim=None, max_length=16))
    assert enc.dim == 32
    emb = enc.encode(["a red ball", ""])
    assert emb.states.shape == (2, 5, 32) and emb.lengths.tolist() == [5, 2]
    assert torch.equal(enc.encode(["a red ball"]).states[0], emb.states[0])
    with pytest.raises(ModelLoadError, match="hidden size 32"):
        TextEncoder(TextEncoderConfig(path=str(tmp_path), dim=384))


def test_memory_cache_equals_fresh_and_evicts(encoder: TextEncoder) -> None:
    cached = CachedTextEncoder(encoder, max_entries=2)
    fresh = encoder.encode(PROMPTS)
    first = cached.encode(PROMPTS)
    assert cached.stats.misses == 3 and len(cached) == 2  # LRU keeps the last two
    hit = cached.encode(PROMPTS[1:])
    assert cached.stats.memory_hits == 2 and cached.stats.misses == 3
    assert torch.equal(first.states, fresh.states) and torch.equal(first.mask, fresh.mask)
    assert torch.equal(hit.states, encoder.encode(PROMPTS[1:]).states)
    cached.encode(PROMPTS[:1])  # evicted earlier: a miss again
    assert cached.stats.misses == 4
    dup = cached.encode([PROMPTS[0], PROMPTS[0]])
    assert torch.equal(dup.states[0], dup.states[1])
    # returned tensors are copies: modifying them leaves the cache intact
    dup.states.zero_()
    cached.encode_unpadded([PROMPTS[0]])[0].zero_()
    assert torch.equal(cached.encode([PROMPTS[0]]).states, encoder.encode([PROMPTS[0]]).states)


def test_disk_cache_round_trip(encoder: TextEncoder, tmp_path: Path) -> None:
    writer = CachedTextEncoder(encoder, cache_dir=tmp_path)
    fresh = writer.encode(PROMPTS)
    files = sorted(tmp_path.glob("*.safetensors"))
    assert len(files) == 3
    path = writer.disk_path(PROMPTS[0])
    assert path is not None and path.is_file()
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata()["prompt"] == PROMPTS[0]
        assert handle.metadata()["encoder"] == encoder.identity

    reader = CachedTextEncoder(encoder, cache_dir=tmp_path)  # empty memory, same folder
    again = reader.encode(PROMPTS)
    assert reader.stats.disk_hits == 3 and reader.stats.misses == 0
    assert torch.equal(again.states, fresh.states) and torch.equal(again.mask, fresh.mask)

    # another max_length is another key; a corrupt file is re-encoded, not trusted
    other = CachedTextEncoder(TextEncoder(TextEncoderConfig(max_length=32)), cache_dir=tmp_path)
    assert other.disk_path(PROMPTS[0]) != path
    path.write_bytes(b"garbage")
    third = CachedTextEncoder(encoder, cache_dir=tmp_path)
    assert torch.equal(third.encode(PROMPTS[:1]).states, fresh.states[:1, : fresh.lengths[0]])
    assert third.stats.misses == 1
    fourth = CachedTextEncoder(encoder, cache_dir=tmp_path)  # the re-encode rewrote the file
    assert torch.equal(fourth.encode(PROMPTS[:1]).states, fresh.states[:1, : fresh.lengths[0]])
    assert fourth.stats.disk_hits == 1


def test_import_is_lazy() -> None:
    code = "import sys, kinema.text, kinema.flow; assert 'transformers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_embedding_helpers() -> None:
    emb = TextEmbedding.from_unpadded([torch.ones(2, 4), torch.ones(3, 4)])
    assert emb.lengths.tolist() == [2, 3]
    assert emb.pad_to(6).states.shape == (2, 6, 4)
    assert emb.repeat(2).batch_size == 4
    with pytest.raises(InvalidInputError, match="mask must be bool"):
        TextEmbedding(states=torch.zeros(1, 2, 4), mask=torch.ones(1, 2))


def test_native_bert_matches_transformers(encoder: TextEncoder) -> None:
    """The bundled MiniLM loads without transformers and computes what transformers computes."""
    from transformers import AutoModel, AutoTokenizer

    from kinema.text.bert import BertEncoder

    assert isinstance(encoder.model, BertEncoder)
    path = resolve_model_path(None)
    hf_model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    hf_tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    prompts = ["a red ball bounces", "", "Two SMALL blue squares, sliding left!  Ünïcode " * 6]
    for prompt in prompts:
        assert encoder.tokenizer([prompt])["input_ids"] == hf_tok([prompt])["input_ids"]
        ours = encoder.tokenizer([prompt], truncation=True, max_length=12)["input_ids"]
        assert ours == hf_tok([prompt], truncation=True, max_length=12)["input_ids"]
    ids = [hf_tok(p)["input_ids"] for p in prompts]
    length = max(len(r) for r in ids)
    x = torch.tensor([r + [0] * (length - len(r)) for r in ids])  # (3, l) padded batch
    mask = (torch.arange(length)[None] < torch.tensor([len(r) for r in ids])[:, None]).long()
    with torch.no_grad():
        ours_states = encoder.model(x, mask).last_hidden_state
        ref = hf_model(input_ids=x, attention_mask=mask).last_hidden_state
    err = ((ours_states - ref).abs() * mask[..., None]).max().item()
    assert err < 1e-4, err


def test_native_load_skips_transformers() -> None:
    code = (
        "import sys; from kinema.text import TextEncoder; e = TextEncoder(); e.encode(['a red ball']); "
        "assert 'transformers' not in sys.modules, 'transformers was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
