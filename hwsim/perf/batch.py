"""One engine step's work on one model replica: prefill chunks and decode sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _ints(values: object) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    if arr.size and arr.min() < 0:
        raise ValueError("token counts must be >= 0")
    return arr


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Batch:
    """What a replica computes in one step.

    ``prefill_new_tokens[i]`` prompt tokens of prefill sequence ``i`` are computed this step,
    after ``prefill_cached_tokens[i]`` tokens already in its KV cache (earlier chunks or a
    prefix-cache hit); ``prefill_completes[i]`` is true when this chunk ends the prompt, so the
    step also produces that sequence's first output token. Each decode sequence ``j`` reads
    ``decode_kv_tokens[j]`` cached tokens and produces one token (more with speculative
    decoding).
    """

    prefill_new_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prefill_cached_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    prefill_completes: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    decode_kv_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        new = _ints(self.prefill_new_tokens)
        cached = _ints(self.prefill_cached_tokens) if len(self.prefill_cached_tokens) else np.zeros_like(new)
        done = np.asarray(self.prefill_completes, dtype=bool).reshape(-1) if len(self.prefill_completes) else \
            np.ones(new.shape, bool)
        if not (new.shape == cached.shape == done.shape):
            raise ValueError("prefill arrays must have the same length")
        object.__setattr__(self, "prefill_new_tokens", new)
        object.__setattr__(self, "prefill_cached_tokens", cached)
        object.__setattr__(self, "prefill_completes", done)
        object.__setattr__(self, "decode_kv_tokens", _ints(self.decode_kv_tokens))

    @classmethod
    def decode(cls, seqs: int, kv_tokens: int) -> Batch:
        """``seqs`` decode sequences, each with ``kv_tokens`` cached tokens."""
        return cls(decode_kv_tokens=np.full(seqs, kv_tokens, np.int64))

    @classmethod
    def prefill(cls, seqs: int, tokens: int, cached: int = 0) -> Batch:
        """``seqs`` whole prompts of ``tokens`` new tokens each (after ``cached`` prefix hits)."""
        return cls(prefill_new_tokens=np.full(seqs, tokens, np.int64),
                   prefill_cached_tokens=np.full(seqs, cached, np.int64))

    @property
    def num_prefill(self) -> int:
        return int(self.prefill_new_tokens.size)

    @property
    def num_decode(self) -> int:
        return int(self.decode_kv_tokens.size)

    @property
    def new_tokens(self) -> int:
        """Tokens that pass through the layers this step (prefill chunks + one per decode)."""
        return int(self.prefill_new_tokens.sum()) + self.num_decode

    @property
    def logit_tokens(self) -> int:
        """Tokens that need the LM head: one per decode sequence and per completed prompt."""
        return self.num_decode + int(self.prefill_completes.sum())

    @property
    def is_empty(self) -> bool:
        return self.new_tokens == 0
