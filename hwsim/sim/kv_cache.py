"""A paged KV-cache block manager (vLLM style): whole blocks of ``block_tokens`` tokens."""

from __future__ import annotations


class BlockManager:
    """Blocks of one replica's KV cache; sequences hold ``ceil(tokens / block_tokens)`` blocks.

    ``used`` never exceeds ``capacity``: :meth:`reserve` refuses what does not fit.
    """

    def __init__(self, capacity: int, block_tokens: int) -> None:
        if capacity < 0 or block_tokens < 1:
            raise ValueError("capacity must be >= 0 and block_tokens >= 1")
        self.capacity = capacity
        self.block_tokens = block_tokens
        self.used = 0
        self.peak = 0
        self._held: dict[int, int] = {}

    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.block_tokens)

    def held(self, seq: int) -> int:
        return self._held.get(seq, 0)

    def extra_for(self, seq: int, tokens: int) -> int:
        """Blocks ``seq`` still needs to hold ``tokens`` tokens."""
        return max(0, self.blocks_for(tokens) - self._held.get(seq, 0))

    @property
    def free(self) -> int:
        return self.capacity - self.used

    def reserve(self, seq: int, tokens: int) -> bool:
        """Grow ``seq`` to hold ``tokens`` tokens; False (and nothing changes) if it does not fit."""
        extra = self.extra_for(seq, tokens)
        if extra > self.free:
            return False
        if extra:
            self._held[seq] = self._held.get(seq, 0) + extra
            self.used += extra
            self.peak = max(self.peak, self.used)
        return True

    def take(self, blocks: int) -> None:
        """Count ``blocks`` more in use, not yet assigned to a sequence (see :meth:`assign`)."""
        if blocks > self.free:
            raise ValueError(f"{blocks} blocks asked, {self.free} free")
        self.used += blocks
        self.peak = max(self.peak, self.used)

    def assign(self, seq: int, blocks: int) -> None:
        """Give ``seq`` ``blocks`` that :meth:`take` already counted."""
        self._held[seq] = self._held.get(seq, 0) + blocks

    def release(self, seq: int) -> None:
        self.used -= self._held.pop(seq, 0)
