"""Exact, vectorised sampling of ``k`` distinct experts per token from popularity weights.

The law
-------
Each token picks ``k`` distinct *slots* (experts) one after the other, every pick
proportional to the weights of the slots not picked yet (successive sampling, the
Plackett-Luce model). It is the law of Gumbel-top-k: a router that adds i.i.d. Gumbel noise
to log-popularities and keeps the ``k`` best draws exactly these sets.

Group-limited routing (DeepSeek's ``topk_group``) is supported in its max-score form (as in
DeepSeek-V2): a group's score is the best score of its experts, a token keeps the
``topk_groups`` best groups and then its ``k`` best experts inside them. (DeepSeek-V3 scores a
group by its two best experts; the max form is the closed model used here.)

How
---
Draw slots with replacement and skip repeats: the distinct values of an i.i.d. stream drawn
from the weights appear in Plackett-Luce order (an exponential race in which slot ``i`` first
appears at an Exp(w_i) time), so the first ``k`` distinct draws are an exact sample. Under the
group rule a draw is kept when it is new and its group is open, or fewer than ``topk_groups``
groups are open yet (its group then opens): the same race, a group opening at the arrival of
its best expert.

* Draws come from an alias table (Walker 1977, Vose 1991) padded to a power of two, so one
  uniform double gives both the column (its top bits) and the coin (the rest): exact up to
  the 2^-45 grid of the uniform.
* The work is *draw-major*: the ``j``-th draws of ``n`` tokens form one int16 vector, and each
  token's picks so far sit in a ``(k + 1, n)`` table. "Is this draw new" is ``k`` contiguous
  vector comparisons; the pick is written unconditionally into the row after the token's last
  pick (a scratch row: a rejected draw left there is a repeat, or a slot of a closed group,
  and comparing later draws with it changes nothing). The Python loop runs over draws, never
  over tokens.
* A group-limited sampler may be given a group table per block of tokens (the experts'
  groups in each MoE layer, seen from the popularity ranks), so many layers share one
  sampler and one call.
* A pilot run with a fixed seed (so results depend only on the caller's generator) measures
  how many draws tokens need. The first round gives every token the 80th percentile of that;
  tokens still short get rounds of a quarter as many (one long round that stops when they
  are done, once at most ``SMALL_TOKENS`` are left). At most ``SMALL_TOKENS`` tokens take
  the 99.9th percentile of draws in one block, tested all at once without a loop over draws.
  After ``cap`` draws (where drawing costs more than a race) the tokens still short continue
  with an exponential race over all slots (``argsort(Exp(1) / w)``), which has the law of the
  rest of the stream's first appearances. The sample is exact whatever the skew; where the
  pilot finds the stream slower than the race (heavy skew with ``k`` close to the number of
  slots) every token races.

Measured speed on one core: see :mod:`hwsim.workload.routing`.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from hwsim.workload.routing_inclusion import inclusion_probabilities
from hwsim.workload.routing_state import Buffers, GroupTable, Progress, alias_table

__all__ = ["TopKSampler", "CHUNK_TOKENS"]

#: Tokens sampled together: large enough to amortise the per-draw Python loop, small enough
#: to keep the working vectors in cache.
CHUNK_TOKENS = 65536
#: The pilot run that sizes the rounds (fixed seed; it depends only on weights and rule).
PILOT_SEED = 20250601
PILOT_TOKENS = 1024
FIRST_ROUND_QUANTILE = 0.8
#: At most this many tokens go through the whole-block path, with this quantile of the draws
#: tokens need (if that is at most SMALL_DRAWS_MAX); the rest continue in rounds.
SMALL_TOKENS = 256
SMALL_QUANTILE = 0.999
SMALL_DRAWS_MAX = 64
#: Tokens behind the Monte Carlo inclusion estimate of group-limited routing (standard error
#: at most 0.5 / sqrt(2**17) = 0.0014 per expert).
INCLUSION_MC_TOKENS = 1 << 17
# Rough per-token costs in ns on one core: one streamed draw (alias draw + k comparisons),
# and one slot of the race (exponential draw + its share of an argsort).
_DRAW_NS, _RACE_NS = 10.0, 25.0


class TopKSampler:
    """Samples ``k`` distinct slots per token, proportional to ``weights`` (see the module doc).

    Parameters
    ----------
    weights : (S,) non-negative popularity of each slot; at least ``k`` must be positive.
    k : picks per token.
    group_of_slot : optional (S,) group id (0..62) of each slot, for group-limited routing;
        calls may pass other tables with the same group sizes (``groups=``).
    topk_groups : at most this many groups per token (with ``group_of_slot``).

    A sampler keeps no state between calls (beyond its lazily computed :meth:`inclusion`);
    every draw comes from the generator passed in.
    """

    def __init__(self, weights: np.ndarray, k: int, *, group_of_slot: np.ndarray | None = None,
                 topk_groups: int | None = None) -> None:
        w = np.asarray(weights, dtype=float)
        if w.ndim != 1 or not np.all(np.isfinite(w)) or np.any(w < 0) or len(w) > 32767:
            raise ValueError("weights must be a 1-D array of at most 32767 finite values >= 0")
        positive = w > 0
        if not 1 <= k <= int(positive.sum()):
            raise ValueError(f"k ({k}) must be in 1..{int(positive.sum())} (the slots with weight > 0)")
        self.k = int(k)
        self.weights = w / w.sum()
        self.num_slots = len(w)
        self._inv_w = np.where(positive, 1.0 / np.where(positive, self.weights, 1.0), np.inf)
        self._uniform = bool(np.all(w == w[0]))
        self._prob, self._alias = alias_table(self.weights)
        self._groups: GroupTable | None = None
        self._topk_groups = 0
        if group_of_slot is not None and topk_groups is not None:
            groups = np.asarray(group_of_slot, dtype=np.int64)
            if groups.shape != w.shape or groups.min() < 0 or groups.max() > 62:
                raise ValueError("group_of_slot must give each slot a group id in 0..62")
            if not np.all(positive):
                raise ValueError("group-limited sampling needs every weight > 0")
            sizes = np.sort(np.bincount(groups))[::-1]
            if self.k > sizes[:topk_groups].sum():
                raise ValueError(f"k ({k}) cannot fit in {topk_groups} groups")
            if topk_groups < np.count_nonzero(sizes):
                self._groups = GroupTable(groups[None, :])
                self._topk_groups = int(topk_groups)
                self._sorted_groups = np.sort(groups)
        self._all = self.k == int(positive.sum())
        self.first_round, self.cap, self.small_draws = self._plan()
        self.extra_round = max(2, -(-self.first_round // 4))
        self._inclusion: np.ndarray | None = None

    @property
    def grouped(self) -> bool:
        return self._groups is not None

    @property
    def inclusion_exact(self) -> bool:
        """Whether :meth:`inclusion` is exact (no group limit) or a Monte Carlo estimate."""
        return not self.grouped

    def inclusion(self, groups: np.ndarray | None = None) -> np.ndarray:
        """(S,) chance that a token picks each slot (sums to ``k``).

        Exact (:func:`~hwsim.workload.routing_inclusion.inclusion_probabilities`, computed
        once) without a group limit; with one, estimated from ``INCLUSION_MC_TOKENS`` tokens
        (fixed seed) under ``groups`` (default: the constructor's table).
        """
        if self.grouped:
            rng = np.random.default_rng(PILOT_SEED + 1)
            table = None if groups is None else np.asarray(groups)[None, :]
            return self.counts(rng, INCLUSION_MC_TOKENS, 1, groups=table)[0] / INCLUSION_MC_TOKENS
        if self._inclusion is None:
            self._inclusion = inclusion_probabilities(self.weights, self.k)
            self._inclusion.setflags(write=False)
        return self._inclusion

    # ------------------------------------------------------------------ public sampling

    def counts(self, rng: np.random.Generator, tokens: int, blocks: int | None = None, *,
               groups: np.ndarray | None = None) -> np.ndarray:
        """(S,) int64: how many of ``tokens`` tokens picked each slot (sums to ``tokens * k``).

        With ``blocks``: ``(blocks, S)``, the counts of ``blocks`` independent groups of
        ``tokens`` tokens sampled together (cheaper than as many calls); ``groups`` may then
        give each block its own group table, ``(blocks, S)``.
        """
        b = 1 if blocks is None else blocks
        out = np.zeros((b, self.num_slots), dtype=np.int64)
        if self._all:
            out[:, self.weights > 0] = tokens
            return out[0] if blocks is None else out
        table = self._table(groups, b)
        if self.k == 1:  # one pick per token (a group limit cannot bind): exactly multinomial
            out[:] = rng.multinomial(tokens, self.weights, size=b)
            return out[0] if blocks is None else out
        total, width = tokens * b, self.num_slots
        for start in range(0, total, CHUNK_TOKENS):
            n = min(CHUNK_TOKENS, total - start)
            block = (start + np.arange(n)) // tokens
            for picks, rows in self._chunk(rng, n, table, block):
                flat = picks + block[rows] * width
                out += np.bincount(flat.ravel(), minlength=b * width).reshape(b, width)
        return out[0] if blocks is None else out

    def ids(self, rng: np.random.Generator, tokens: int, blocks: int | None = None, *,
            groups: np.ndarray | None = None) -> np.ndarray:
        """(tokens, k) int64: each token's slots in the order it picked them.

        ``groups``: a group table for this call, ``(S,)``. With ``blocks``: ``(blocks, tokens,
        k)``, ``blocks`` independent groups of tokens sampled together, and ``groups`` may give
        each block its own table, ``(blocks, S)``.
        """
        b = 1 if blocks is None else blocks
        if groups is not None and blocks is None:
            groups = np.asarray(groups)[None, :]
        table = self._table(groups, b)
        total = tokens * b
        out = np.empty((total, self.k), dtype=np.int64)
        for start in range(0, total, CHUNK_TOKENS):
            n = min(CHUNK_TOKENS, total - start)
            block = (start + np.arange(n)) // tokens
            for picks, rows in self._chunk(rng, n, table, block):
                out[start + rows] = picks.T
        return out if blocks is None else out.reshape(b, tokens, self.k)

    # ------------------------------------------------------------------ internals

    def _table(self, groups: np.ndarray | None, blocks: int) -> GroupTable | None:
        if groups is None or self._groups is None:
            return self._groups
        table = np.asarray(groups, dtype=np.int64)
        if table.shape != (blocks, self.num_slots) or np.any(np.sort(table, axis=1) != self._sorted_groups):
            raise ValueError(f"groups must be a ({blocks}, {self.num_slots}) table with the sampler's group sizes")
        return GroupTable(table)

    def _draw_into(self, rng: np.random.Generator, buf: Buffers) -> np.ndarray:
        """One i.i.d. slot per lane from the alias table, into ``buf.slot`` (int16)."""
        u = rng.random(len(buf.slot), out=buf.u)
        if self._uniform:
            u *= self.num_slots
            np.copyto(buf.slot, u, casting="unsafe")
            return buf.slot
        u *= len(self._prob)
        np.copyto(buf.col, u, casting="unsafe")
        u -= buf.col
        self._prob.take(buf.col, out=buf.prob)
        np.less(u, buf.prob, out=buf.keep)
        self._alias.take(buf.col, out=buf.slot)
        np.copyto(buf.slot, buf.col, where=buf.keep, casting="unsafe")
        return buf.slot

    def _draw_block(self, rng: np.random.Generator, m: int, n: int) -> np.ndarray:
        """(m, n) int16 i.i.d. slots (for small blocks; large ones go through :class:`Buffers`)."""
        u = rng.random((m, n))
        if self._uniform:
            u *= self.num_slots
            return u.astype(np.int16)
        u *= len(self._prob)
        col = u.astype(np.intp)
        u -= col
        out = self._alias.take(col)
        np.copyto(out, col, where=u < self._prob.take(col), casting="unsafe")
        return out

    def _race(self, rng: np.random.Generator, n: int, k: int | None = None) -> np.ndarray:
        """(S or k, n) int16: slots per token in exponential-race (Plackett-Luce) order."""
        keys = rng.standard_exponential((n, self.num_slots))
        keys *= self._inv_w
        if k is None:
            order = np.argsort(keys, axis=1)
        else:
            top = np.argpartition(keys, k - 1, axis=1)[:, :k]
            order = np.take_along_axis(top, np.argsort(np.take_along_axis(keys, top, 1), 1), 1)
        return np.ascontiguousarray(order.T.astype(np.int16))

    def _feed(self, st: Progress, rng: np.random.Generator, draws: int = 0, *, buffers: Buffers,
              groups: GroupTable | None, cand: np.ndarray | None = None,
              done_at: np.ndarray | None = None) -> None:
        """Offer each token ``draws`` fresh draws, or the rows of ``cand`` (m, n), in order."""
        k = self.k
        n = len(st.count)
        buf = buffers.head(n)
        flat = st.picked.reshape(-1)
        lanes = np.arange(n)
        scratch = np.empty((k, n), dtype=bool)
        new, flag = np.empty(n, dtype=bool), np.empty(n, dtype=bool)
        opened = np.empty(n, dtype=bool)
        word = np.empty(n, dtype=np.int64)
        total = draws if cand is None else len(cand)
        for j in range(total):
            c = self._draw_into(rng, buf) if cand is None else cand[j]
            np.less(st.count, k, out=new)
            p = min(k, st.seen + j)
            if p:
                np.not_equal(st.picked[:p], c, out=scratch[:p])
                np.logical_and.reduce(scratch[:p], axis=0, out=flag)
                new &= flag
            if groups is not None:
                np.add(c, st.offset, out=buf.col)
                b = groups.bits.take(buf.col)
                np.bitwise_and(st.mask, b, out=word)
                np.not_equal(word, 0, out=opened)
                np.less(st.nopen, self._topk_groups, out=flag)
                flag |= opened
                new &= flag
                np.logical_not(opened, out=opened)
                opened &= new  # these draws open their group
                np.multiply(b, opened, out=word)
                st.mask |= word
                st.nopen += opened
            np.multiply(st.count, n, out=buf.col)
            buf.col += lanes
            flat[buf.col] = c
            st.count += new
            if done_at is not None:
                np.copyto(done_at, st.seen + j + 1, where=(st.count >= k) & (done_at < 0))
            if j % 4 == 3 and st.count.min() >= k:
                total = j + 1
                break
        st.seen += total

    def _chunk(self, rng: np.random.Generator, n: int, groups: GroupTable | None,
               block: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (picks (k, d), token rows (d,)) blocks that together cover ``n`` tokens."""
        rows = np.arange(n)
        if self._all or (self.first_round == 0 and groups is None):
            yield self._race(rng, n, self.k), rows
            return
        offset = block * self.num_slots if groups is not None and len(groups.ids) > self.num_slots else None
        if n <= SMALL_TOKENS and self.small_draws:
            st = yield from self._small(rng, rows, groups, offset)
        else:
            st = Progress(self.k, rows, offset)
            if self.first_round == 0:
                self._feed(st, rng, buffers=Buffers(n), groups=groups, cand=self._race(rng, n))
            else:
                self._feed(st, rng, self.first_round, buffers=Buffers(n), groups=groups)
        yield from self._finish(st, rng, groups)

    def _finish(self, st: Progress, rng: np.random.Generator,
                groups: GroupTable | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Further rounds for the tokens still short, then the race; yields finished blocks."""
        buf = Buffers(len(st.rows))
        while len(st.rows) and st.seen < self.cap and st.count.min() < self.k:
            yield st.split(self.k)
            # few tokens left: one long round that stops when they are all done
            extra = self.cap - st.seen if len(st.rows) <= SMALL_TOKENS else self.extra_round
            self._feed(st, rng, min(extra, self.cap - st.seen), buffers=buf, groups=groups)
        if len(st.rows) and st.count.min() < self.k:
            # continue the stream with a race over all slots: exact, and always completes
            yield st.split(self.k)
            self._feed(st, rng, buffers=buf, groups=groups, cand=self._race(rng, len(st.rows)))
        assert not len(st.rows) or st.count.min() >= self.k, "the race must complete every token"
        yield st.split(self.k)

    def _small(self, rng: np.random.Generator, rows: np.ndarray, groups: GroupTable | None,
               offset: np.ndarray | None):
        """A few tokens at once: all ``small_draws`` draws in one block and whole-block tests
        (no loop over draws). Yields the finished tokens; returns the others' progress."""
        k, m, n = self.k, self.small_draws, len(rows)
        cand = self._draw_block(rng, m, n)
        same = cand[:, None, :] == cand[None, :, :]                     # (m, m, n)
        earlier = np.tri(m, k=-1, dtype=bool)[:, :, None]
        keep = ~(same & earlier).any(axis=1)
        shift = np.zeros(n, dtype=np.int64) if offset is None else offset
        if groups is not None:
            gid = groups.ids.take(cand + shift)
            first = (gid[:, None, :] == gid[None, :, :]).argmax(axis=1)     # group's first draw
            opened_at = np.cumsum(first == np.arange(m)[:, None], axis=0)   # groups seen so far
            keep &= np.take_along_axis(opened_at, first, axis=0) <= self._topk_groups
        taken = np.cumsum(keep, axis=0)
        keep &= taken <= k
        done = taken[-1] >= k
        yield cand.T[done][keep.T[done]].reshape(-1, k).T, rows[done]
        short = np.flatnonzero(~done)
        st = Progress(k, rows[short], shift[short])
        st.seen = m
        for lane, r in enumerate(short):
            picks = cand[keep[:, r], r]
            st.picked[: len(picks), lane] = picks
            st.count[lane] = len(picks)
            if groups is not None:
                groups_open = np.unique(groups.ids[shift[r] + picks])
                st.mask[lane] = np.bitwise_or.reduce(np.left_shift(1, groups_open), initial=0)
                st.nopen[lane] = len(groups_open)
        return st

    def _plan(self) -> tuple[int, int, int]:
        """Draws in the first round, before racing, and in the small-block path.

        (0, 0, 0) means: race at once. Depends only on the weights, ``k`` and the constructor's
        group table (results never depend on which tables calls pass).
        """
        if self._all:
            return 0, 0, 0
        if self.k == 1:
            return 1, 1, 1
        race_draws = int(_RACE_NS * self.num_slots / _DRAW_NS)
        pilot = np.random.default_rng(PILOT_SEED)
        m = 2 * self.k + 8
        while True:
            st = Progress(self.k, np.arange(PILOT_TOKENS))
            done_at = np.full(PILOT_TOKENS, -1, dtype=np.int64)
            self._feed(st, pilot, m, buffers=Buffers(PILOT_TOKENS), groups=self._groups, done_at=done_at)
            if (done_at > 0).mean() >= SMALL_QUANTILE or m >= race_draws:
                break
            m *= 2
        needed = np.where(done_at > 0, done_at, m + 1)
        first = int(np.quantile(needed, FIRST_ROUND_QUANTILE, method="higher"))
        if first >= race_draws:
            return 0, 0, 0
        small = int(np.quantile(needed, SMALL_QUANTILE, method="higher"))
        return first, max(race_draws, 2 * first), (small if small <= SMALL_DRAWS_MAX else 0)
