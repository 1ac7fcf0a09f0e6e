"""One inference request: when it arrives, how long its prompt and answer are, what it shares."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_BLOCK_TOKENS", "Request"]

#: Tokens per prefix block unless a file or record says otherwise (Mooncake's block size).
DEFAULT_BLOCK_TOKENS = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One inference request of a trace.

    Parameters
    ----------
    request_id:
        Identifier, an integer >= 0 (unique within a trace by convention; not checked).
    arrival_s:
        Arrival time in seconds from the start of the trace, finite and >= 0.
    input_tokens, output_tokens:
        Prompt length and number of tokens to generate, integers >= 1.
    prefix_blocks:
        Hashes of the prompt's consecutive ``block_tokens``-sized blocks; equal hashes mark
        KV-cache blocks that an earlier request may have left behind. At most
        ``ceil(input_tokens / block_tokens)`` of them. Empty when unknown.
    block_tokens:
        Tokens per prefix block, >= 1 (default 512).
    tenant:
        Who sent the request (a non-empty string), or None.
    priority:
        Scheduling priority; larger is more urgent; default 0.

    Raises
    ------
    ValueError
        When a field is out of range (readers turn this into a located SpecError first).
    """

    request_id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    prefix_blocks: tuple[int, ...] = ()
    block_tokens: int = DEFAULT_BLOCK_TOKENS
    tenant: str | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        self._normalise()
        if self.request_id < 0:
            raise ValueError(f"request_id must be >= 0, got {self.request_id}")
        if not (math.isfinite(self.arrival_s) and self.arrival_s >= 0):
            raise ValueError(f"arrival_s must be finite and >= 0, got {self.arrival_s!r}")
        if self.input_tokens < 1 or self.output_tokens < 1 or self.block_tokens < 1:
            raise ValueError(
                "input_tokens, output_tokens and block_tokens must be >= 1, got "
                f"{self.input_tokens}, {self.output_tokens} and {self.block_tokens}"
            )
        if len(self.prefix_blocks) > self.num_prompt_blocks:
            raise ValueError(
                f"{len(self.prefix_blocks)} prefix blocks of {self.block_tokens} tokens are more than a "
                f"{self.input_tokens}-token prompt holds ({self.num_prompt_blocks})"
            )
        if self.tenant is not None and (not isinstance(self.tenant, str) or not self.tenant):
            raise ValueError(f"tenant must be a non-empty string or None, got {self.tenant!r}")

    def _normalise(self) -> None:
        """Store plain ``int``/``float``/``tuple`` values (numpy scalars, lists are converted)."""
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if type(value) is not int:
                object.__setattr__(self, name, _as_int(value, name))
        if type(self.arrival_s) is not float:
            object.__setattr__(self, "arrival_s", float(self.arrival_s))
        blocks = self.prefix_blocks
        if type(blocks) is not tuple or not all(type(b) is int for b in blocks):
            object.__setattr__(
                self, "prefix_blocks", tuple(_as_int(b, "prefix_blocks") for b in blocks)
            )

    @property
    def total_tokens(self) -> int:
        """Prompt plus generated tokens."""
        return self.input_tokens + self.output_tokens

    @property
    def num_prompt_blocks(self) -> int:
        """Blocks of ``block_tokens`` the prompt spans (the last one may be partial)."""
        return -(-self.input_tokens // self.block_tokens)


_INT_FIELDS = ("request_id", "input_tokens", "output_tokens", "block_tokens", "priority")


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
