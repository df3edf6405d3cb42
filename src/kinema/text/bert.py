"""A native PyTorch BERT encoder and a ``tokenizers``-only tokenizer, for fast startup.

Importing ``transformers`` and building a model through its auto classes costs more than a second
on a small CPU, which is most of ``kinema generate``'s model load. A BERT encoder is small enough to
write out: this module reads a Hugging Face BERT folder (``config.json`` with
``model_type: bert``, ``model.safetensors``, ``tokenizer.json``) directly and computes the same
last hidden states (tested against ``transformers`` to float precision). Other encoders (T5, ...)
still load through ``transformers`` (:func:`kinema.text.encoder._load`).

Shapes: ``input_ids (g, l)`` int64 -> ``last_hidden_state (g, l, d)`` float32.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.nn import functional as F

from kinema.errors import ModelLoadError

_IGNORED_KEYS = ("pooler.", "embeddings.position_ids")  # the pooler is unused; position_ids is a buffer


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face BERT ``config.json`` that the forward pass uses."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    hidden_act: str

    @classmethod
    def from_hf(cls, data: dict[str, Any], where: Path) -> BertConfig:
        try:
            config = cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except KeyError as exc:
            raise ModelLoadError(f"{where}/config.json lacks BERT field {exc.args[0]!r}") from exc
        if config.hidden_act not in ("gelu", "relu"):
            raise ModelLoadError(f"{where}: hidden_act={config.hidden_act!r} unsupported natively; allowed gelu, relu")
        if config.hidden_size % config.num_attention_heads:
            raise ModelLoadError(f"{where}: hidden_size {config.hidden_size} not divisible by {config.num_attention_heads} heads")
        return config


@dataclass
class EncoderOutput:
    last_hidden_state: Tensor  # (g, l, d)


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (l,)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)  # (g, l, d)


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)


class _DenseNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: BERT's attention-output and block-output sublayer."""

    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        g, l, d = x.shape
        h = self.self.heads
        q, k, v = (lin(x).view(g, l, h, d // h).transpose(1, 2) for lin in (self.self.query, self.self.key, self.self.value))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)  # (g, h, l, l)
        if bias is not None:
            scores = scores + bias
        ctx = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(g, l, d)  # (g, l, d)
        return self.output(ctx, x)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)
        self.act = F.gelu if c.hidden_act == "gelu" else F.relu

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: Tensor, bias: Tensor | None) -> Tensor:
        a = self.attention(x, bias)
        return self.output(self.intermediate(a), a)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class BertEncoder(nn.Module):
    """BERT's embeddings + transformer layers (no pooler); parameter names match Hugging Face's."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> EncoderOutput:
        """``input_ids (g, l)``, ``attention_mask (g, l)`` (1 = real token) -> states ``(g, l, d)``."""
        bias = None
        if attention_mask is not None and not bool(attention_mask.all()):
            bias = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min  # (g, 1, 1, l)
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, bias)
        return EncoderOutput(last_hidden_state=x)


class FastTokenizer:
    """The slice of a Hugging Face tokenizer's call API that :class:`TextEncoder` uses, on ``tokenizers``."""

    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.no_truncation()

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def __call__(
        self, prompts: list[str], add_special_tokens: bool = True, truncation: bool = False, max_length: int | None = None
    ) -> dict[str, list[list[int]]]:
        rows = [e.ids for e in self._tok.encode_batch(prompts, add_special_tokens=add_special_tokens)]
        if truncation and max_length is not None:
            rows = [r if len(r) <= max_length else [*r[: max_length - 1], r[-1]] for r in rows]  # keep [SEP]
        return {"input_ids": rows}


def native_supported(path: Path) -> bool:
    """Whether ``path`` is a BERT folder this module loads without ``transformers``."""
    try:
        data = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        data.get("model_type") == "bert"
        and data.get("position_embedding_type", "absolute") == "absolute"
        and (path / "model.safetensors").is_file()
        and (path / "tokenizer.json").is_file()
    )


def load_native_bert(path: Path) -> tuple[FastTokenizer, BertEncoder]:
    """Tokenizer + fp32 eval-mode encoder from a BERT folder (see :func:`native_supported`)."""
    config = BertConfig.from_hf(json.loads((path / "config.json").read_text()), path)
    # Built on the CPU (about 0.09 s of init for MiniLM): a meta-device context would import
    # torch._dynamo, about 1 s on a 2-core CPU, for every process that loads the encoder.
    model = BertEncoder(config)
    state = {k: v for k, v in load_file(str(path / "model.safetensors")).items() if not k.startswith(_IGNORED_KEYS)}
    state = {k.removeprefix("bert."): v.float() for k, v in state.items()}
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing:
        raise ModelLoadError(
            f"text encoder weights at {path} lack {len(missing)} parameters (e.g. {missing[:5]}); "
            "expected a complete BERT checkpoint matching its config.json"
        )
    if unexpected:
        raise ModelLoadError(f"text encoder weights at {path} hold {len(unexpected)} unknown tensors (e.g. {unexpected[:5]}); expected a BERT encoder")
    model.load_state_dict(state, assign=True)
    return FastTokenizer(path), model.eval().requires_grad_(False)
