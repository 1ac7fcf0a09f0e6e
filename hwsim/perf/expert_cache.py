"""Expert caches in device memory: Numba replay of routing traces and a stateful per-step cache.

A MoE model whose experts do not all fit in HBM keeps some of them in an HBM *expert cache*;
the others live in host DRAM or flash and are fetched when a token picks one that is not
resident (a miss). This module answers "what fraction of expert uses hit the cache" for a
routing trace ``ids[token, layer, slot]`` (expert ids, ``-1`` = no expert, e.g. a
zero-computation expert), under a replacement policy, a cache size and a cache scope.

The model
---------
* **Steps.** The trace is consumed in *steps* of ``tokens_per_step`` consecutive tokens (1 for
  batch-1 decode; a batch otherwise). In a step, layer by layer in forward order, the layer's
  *access* is the set of distinct experts its tokens picked. An expert of the set that is
  resident is a hit; one that is not is a miss, fetched once for the step (however many of the
  step's tokens picked it) and then made resident. Hits and misses are therefore counted per
  distinct (step, layer, expert): for batch-1 decode that is per token-expert use.
* **Order inside an access.** Hits are counted against the cache as it was before the
  access. Then every expert of the access is touched in the order the tokens picked it (a hit
  is refreshed, a miss enters the cache), and the cache is trimmed back to ``capacity`` by
  evicting in the policy's order, never an expert the current access used while another can
  go (only an access needing more experts than the cache holds evicts its own, earliest
  first). Touching in pick order, whatever hit, keeps LRU a stack algorithm: a larger LRU
  cache always holds what a smaller one holds, so it never hits less (Mattson et al., 1970).
* **Scope.** ``layer``: every MoE layer has its own cache of ``capacity`` experts (how
  offloading engines such as Mixtral-offloading, MoE-Infinity or the moe-lrc toy models keep
  them). ``device``: one cache of ``capacity`` experts shared by all layers of the device; the
  layers of a step then compete for it, in forward order.
* **Policies** (``policy`` codes below):

  - ``lru``: evict the least recently used resident.
  - ``lfu``: evict the least frequently used resident, ties to the least recently used. The
    frequency of an expert counts the steps that used it since the cache started (kept when it
    is evicted, *no decay*): the long-run popular experts win, as in frequency-based expert
    caches (MoE-Infinity's activation counts).
  - ``fifo``: evict the resident inserted first; a hit does not refresh it.
  - ``static``: the ``capacity`` most popular experts (per layer, or over all layers with
    ``device`` scope) are resident from the start and never evicted; a miss is fetched for the
    step and dropped. Popularity comes from the caller (a warm-up or the routing model) or, in
    offline replay, from the trace itself (an oracle "static-hot" set).
  - ``window``: the sliding window of "LLM in a flash" (Alizadeh et al., 2023) applied to
    experts: keep the experts used in the last ``window`` steps, as many as fit (least recently
    used evicted first when they do not); at the end of each step the experts not used in the
    last ``window`` steps are dropped, so the cache may hold fewer than ``capacity``.
  - ``belady``: the optimal offline policy (Belady, 1966): trimming evicts the expert whose
    next use is furthest in the future (ties: least recently used), the fetched ones included
    and without sparing the current access, so after every access the cache holds the
    ``capacity`` experts needed soonest. That is the optimum of any policy that fetches misses
    on demand: an upper bound, offline replay only.
  - ``segment`` (:func:`segment_hits`, offline): the *segment cache best hit rate* (SCH) of
    Liang et al., "Not All Models Suit Expert Offloading: On Local Routing Consistency of
    Mixture-of-Expert Models" (2025). The trace is cut into segments of ``m`` consecutive
    tokens (restarted at each sequence); for each segment an oracle holds the ``capacity``
    experts that segment picks most, and its hits are their picks. Counted per token pick,
    it ignores the cost of loading each segment's set: a bound on what a cache refreshed every
    ``m`` tokens with perfect foresight can reach, which measures how local the routing is.
* **Warm start.** Empty, or pre-filled (``popularity``, shape ``(L, E)``) with the most
  popular experts, inserted least popular first so that they are also the first evicted.
  Popularity ties go to the lower expert index.

Every kernel has a pure-Python twin in :mod:`hwsim.perf.expert_cache_reference` written
independently (dictionaries and ``min``/``max`` over explicit keys); a test holds the two
equal. ``NUMBA_DISABLE_JIT=1`` turns the kernels into plain Python.

Implementation: each (layer, expert) is a *key* ``layer * E + expert``; its state is a column
of a field-major ``int64`` table (resident flag, a doubly linked list per cache partition in
recency or insertion order, access stamp, last touch, tokens, frequency, last step); LRU,
window and FIFO evict in O(1) from the list tail (FIFO skipping the current access's keys), LFU
and Belady scan the partition's residents. One kernel (:func:`run`) holds the whole per-access
path, so replay runs at tens of millions of accesses per second on one core
(``benchmarks/bench_cache.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

LRU, LFU, FIFO, STATIC, WINDOW, BELADY = 0, 1, 2, 3, 4, 5
POLICY_CODES: dict[str, int] = {"lru": LRU, "lfu": LFU, "fifo": FIFO, "static": STATIC,
                                "window": WINDOW, "belady": BELADY}
"""Policy name -> kernel code."""

SCOPES = ("layer", "device")

NEVER = np.int64(1) << np.int64(62)
"""Next-use time of a key that is not used again."""

# rows of the per-key state table (field-major: each field is a contiguous row over keys)
_RES, _PREV, _NEXT, _STAMP, _SEQ, _TOK, _FREQ, _LSTEP = range(8)
_NFIELD = 8
# rows of the per-partition table
_HEAD, _TAIL, _COUNT = range(3)
# counters: touch sequence, access stamp, step index
_CSEQ, _CACC, _CSTEP = range(3)


# -- state tables -----------------------------------------------------------------------------
@njit(cache=True)
def new_state(layers: int, experts: int, scope_layer: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty ``(keys, parts, counters)`` tables for ``layers x experts`` keys.

    ``keys[field, key]`` and ``parts[field, partition]`` (fields above); a partition is a layer
    (``scope_layer``) or the whole device. The lists run from the head (most recent) to the tail.
    """
    keys = np.zeros((_NFIELD, layers * experts), dtype=np.int64)
    keys[_PREV, :] = -1
    keys[_NEXT, :] = -1
    keys[_STAMP, :] = -1
    keys[_LSTEP, :] = -1
    parts = np.zeros((3, layers if scope_layer else 1), dtype=np.int64)
    parts[_HEAD, :] = -1
    parts[_TAIL, :] = -1
    return keys, parts, np.zeros(3, dtype=np.int64)


@njit(cache=True)
def _unlink(prv: np.ndarray, nxt: np.ndarray, head: np.ndarray, tail: np.ndarray, p: int,
            key: int) -> None:
    before = prv[key]
    after = nxt[key]
    if before >= 0:
        nxt[before] = after
    else:
        head[p] = after
    if after >= 0:
        prv[after] = before
    else:
        tail[p] = before
    prv[key] = -1
    nxt[key] = -1


@njit(cache=True)
def _push_head(prv: np.ndarray, nxt: np.ndarray, head: np.ndarray, tail: np.ndarray, p: int,
               key: int) -> None:
    first = head[p]
    prv[key] = -1
    nxt[key] = first
    if first >= 0:
        prv[first] = key
    else:
        tail[p] = key
    head[p] = key


@njit(cache=True)
def _evict(st: np.ndarray, ps: np.ndarray, p: int, key: int) -> None:
    _unlink(st[_PREV], st[_NEXT], ps[_HEAD], ps[_TAIL], p, key)
    st[_RES, key] = 0
    ps[_COUNT, p] -= 1


@njit(cache=True)
def _admit(st: np.ndarray, ps: np.ndarray, p: int, key: int) -> None:
    _push_head(st[_PREV], st[_NEXT], ps[_HEAD], ps[_TAIL], p, key)
    st[_RES, key] = 1
    ps[_COUNT, p] += 1


@njit(cache=True)
def fill(st: np.ndarray, ps: np.ndarray, ctr: np.ndarray, keys: np.ndarray, experts: int,
         scope_layer: bool) -> None:
    """Make ``keys`` resident in this order (the last one is the most recent)."""
    for i in range(keys.shape[0]):
        key = keys[i]
        if st[_RES, key]:
            continue
        p = key // experts if scope_layer else 0
        st[_SEQ, key] = ctr[_CSEQ]
        ctr[_CSEQ] += 1
        _admit(st, ps, p, key)


@njit(cache=True)
def _victim(st: np.ndarray, ps: np.ndarray, p: int, policy: int, acc: int, nuk: np.ndarray) -> int:
    """LFU and Belady: the resident of partition ``p`` to evict (see the module's model)."""
    prv = st[_PREV]
    seq = st[_SEQ]
    best = ps[_TAIL, p]
    key = prv[best]
    if policy == LFU:          # least (used now, frequency, recency)
        stamp = st[_STAMP]
        freq = st[_FREQ]
        while key >= 0:
            bp = stamp[best] == acc
            kp = stamp[key] == acc
            if (kp < bp) or (kp == bp and (freq[key] < freq[best] or (
                    freq[key] == freq[best] and seq[key] < seq[best]))):
                best = key
            key = prv[key]
        return int(best)
    while key >= 0:            # Belady: furthest next use, ties to the least recent
        if nuk[key] > nuk[best] or (nuk[key] == nuk[best] and seq[key] < seq[best]):
            best = key
        key = prv[key]
    return int(best)


@njit(cache=True)
def expire(st: np.ndarray, ps: np.ndarray, step: int, window: int) -> None:
    """Window policy, end of ``step``: drop the residents the last ``window`` steps did not use."""
    for p in range(ps.shape[1]):
        key = ps[_TAIL, p]
        while key >= 0 and st[_LSTEP, key] <= step - window:
            before = st[_PREV, key]
            _evict(st, ps, p, key)
            key = before


@njit(cache=True)
def run(ids: np.ndarray, tokens_per_step: int, experts: int, policy: int, scope_layer: bool,
        capacity: int, window: int, st: np.ndarray, ps: np.ndarray, ctr: np.ndarray,
        nu: np.ndarray, nuk: np.ndarray, hits: np.ndarray, misses: np.ndarray, buf: np.ndarray,
        record: np.ndarray) -> int:
    """Step the cache over all of ``ids`` (steps of ``tokens_per_step`` tokens).

    Adds each layer's hits and misses to ``hits`` and ``misses``; when ``record`` is not empty
    the missed keys are written to it in order and their number is returned (each key's
    ``_TOK`` field then holds how many tokens of its access picked it). Belady only: ``nu``
    (shape of ``ids``) holds each pick's next-use time and ``nuk`` each key's current one.
    ``buf`` is scratch of ``experts`` entries.

    The per-access path is written out in this one function on purpose: calls to helper
    functions that take arrays cost more than the work of an access.
    """
    res = st[_RES]
    prv = st[_PREV]
    nxt = st[_NEXT]
    stamp = st[_STAMP]
    seqs = st[_SEQ]
    tok = st[_TOK]
    freq = st[_FREQ]
    lstep = st[_LSTEP]
    head = ps[_HEAD]
    tail = ps[_TAIL]
    count = ps[_COUNT]
    seq = ctr[_CSEQ]
    acc = ctr[_CACC]
    step = ctr[_CSTEP]
    n_tok, layers, k = ids.shape
    belady = policy == BELADY
    move = policy in (LRU, WINDOW, LFU)
    admit = policy != STATIC and capacity > 0
    scan = policy in (LFU, BELADY)
    fifo = policy == FIFO
    counts_tokens = record.shape[0] > 0          # only what the policy reads is kept up to date
    counts_uses = policy == LFU
    ages = policy == WINDOW
    orders = policy in (LFU, BELADY)
    n_rec = 0
    for t0 in range(0, n_tok, tokens_per_step):
        t1 = min(n_tok, t0 + tokens_per_step)
        for layer in range(layers):
            p = layer if scope_layer else 0
            base = layer * experts
            h = 0
            m = 0
            # 1. the access's distinct experts, in pick order
            n = 0
            for t in range(t0, t1):
                for j in range(k):
                    e = ids[t, layer, j]
                    if e < 0:
                        continue
                    key = base + e
                    if stamp[key] == acc:
                        if counts_tokens:
                            tok[key] += 1
                        continue
                    stamp[key] = acc
                    if counts_tokens:
                        tok[key] = 1
                    if belady:
                        nuk[key] = nu[t, layer, j]
                    buf[n] = key
                    n += 1
            # 2. hits move to the head, misses are fetched and enter at the head, in pick order
            for i in range(n):
                key = buf[i]
                if counts_uses:
                    freq[key] += 1
                if ages:
                    lstep[key] = step
                if orders:
                    seqs[key] = seq
                    seq += 1
                first = head[p]
                if res[key]:
                    h += 1
                    if move and first != key:          # unlink (it has a predecessor), push
                        before = prv[key]
                        after = nxt[key]
                        nxt[before] = after
                        if after >= 0:
                            prv[after] = before
                        else:
                            tail[p] = before
                        prv[key] = -1
                        nxt[key] = first
                        prv[first] = key
                        head[p] = key
                    continue
                if counts_tokens:
                    record[n_rec] = key
                    n_rec += 1
                m += 1
                if admit:
                    prv[key] = -1
                    nxt[key] = first
                    if first >= 0:
                        prv[first] = key
                    else:
                        tail[p] = key
                    head[p] = key
                    res[key] = 1
                    count[p] += 1
            # 3. back to capacity, evicting in the policy's order
            cursor = tail[p]
            while count[p] > capacity:
                if scan:
                    victim = _victim(st, ps, p, policy, acc, nuk)
                else:
                    victim = tail[p]
                    if fifo:                           # the oldest not used by this access
                        while cursor >= 0 and stamp[cursor] == acc:
                            cursor = prv[cursor]
                        if cursor >= 0:
                            victim = cursor
                            cursor = prv[cursor]
                before = prv[victim]
                after = nxt[victim]
                if before >= 0:
                    nxt[before] = after
                else:
                    head[p] = after
                if after >= 0:
                    prv[after] = before
                else:
                    tail[p] = before
                prv[victim] = -1
                nxt[victim] = -1
                res[victim] = 0
                count[p] -= 1
            hits[layer] += h
            misses[layer] += m
            acc += 1
        if policy == WINDOW:
            expire(st, ps, step, window)
        step += 1
    ctr[_CSEQ] = seq
    ctr[_CACC] = acc
    ctr[_CSTEP] = step
    return n_rec


@njit(cache=True)
def next_use(ids: np.ndarray, tokens_per_step: int, experts: int) -> tuple[np.ndarray, np.ndarray]:
    """Belady's oracle: for each pick ``ids[t, l, j]`` the access time (``step * L + l``) of the
    next step that uses the same (layer, expert), or :data:`NEVER`; and each key's first use."""
    n_tok, layers, k = ids.shape
    nu = np.empty((n_tok, layers, k), dtype=np.int64)
    seen = np.full(layers * experts, NEVER, dtype=np.int64)
    steps = (n_tok + tokens_per_step - 1) // tokens_per_step
    for s in range(steps - 1, -1, -1):
        t0 = s * tokens_per_step
        t1 = min(n_tok, t0 + tokens_per_step)
        for layer in range(layers):
            base = layer * experts
            for t in range(t0, t1):
                for j in range(k):
                    e = ids[t, layer, j]
                    nu[t, layer, j] = seen[base + e] if e >= 0 else NEVER
            now = s * layers + layer
            for t in range(t0, t1):
                for j in range(k):
                    e = ids[t, layer, j]
                    if e >= 0:
                        seen[base + e] = now
    return nu, seen


@njit(cache=True)
def replay(ids: np.ndarray, tokens_per_step: int, experts: int, policy: int, scope_layer: bool,
           capacity: int, window: int, fill_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Replay a whole trace from a cache pre-filled with ``fill_keys`` (in insertion order);
    returns ``(hits, misses)`` per layer."""
    n_tok, layers, k = ids.shape
    st, ps, ctr = new_state(layers, experts, scope_layer)
    if policy == BELADY:
        nu, nuk = next_use(ids, tokens_per_step, experts)     # warm keys: their first use
    else:
        nu = np.zeros((0, 0, 0), dtype=np.int64)
        nuk = np.zeros(0, dtype=np.int64)
    fill(st, ps, ctr, fill_keys, experts, scope_layer)
    hits = np.zeros(layers, dtype=np.int64)
    misses = np.zeros(layers, dtype=np.int64)
    run(ids, tokens_per_step, experts, policy, scope_layer, capacity, window, st, ps, ctr, nu,
        nuk, hits, misses, np.empty(experts, dtype=np.int64), np.zeros(0, dtype=np.int64))
    return hits, misses


@njit(cache=True)
def cache_step(ids: np.ndarray, experts: int, policy: int, scope_layer: bool, capacity: int,
               window: int, st: np.ndarray, ps: np.ndarray, ctr: np.ndarray, out: np.ndarray,
               buf: np.ndarray) -> int:
    """One engine step of :class:`ExpertCache` over all of ``ids``'s tokens and layers.

    Returns the number ``m`` of missed keys, or -1 (nothing done) when an id is not in
    ``[-1, experts)``. ``out`` receives hits (``L``), misses (``L``), then the missed keys'
    layers, experts and token counts (``m`` each).
    """
    n_tok, layers, k = ids.shape
    for t in range(n_tok):
        for layer in range(layers):
            for j in range(k):
                if ids[t, layer, j] < -1 or ids[t, layer, j] >= experts:
                    return -1
    out[:2 * layers] = 0
    keys = out[2 * layers:]                  # the missed keys, in order, then spread in place
    n = run(ids, max(n_tok, 1), experts, policy, scope_layer, capacity, window, st, ps, ctr,
            np.zeros((0, 0, 0), dtype=np.int64), np.zeros(0, dtype=np.int64), out[:layers],
            out[layers:2 * layers], buf, keys)
    if n_tok == 0:                           # an empty step still ages the window
        if policy == WINDOW:
            expire(st, ps, ctr[_CSTEP], window)
        ctr[_CSTEP] += 1
    for i in range(n - 1, -1, -1):           # keys[i] -> layer, expert, tokens
        key = keys[i]
        keys[2 * n + i] = st[_TOK, key]
        keys[n + i] = key % experts
        keys[i] = key // experts
    return n


@njit(cache=True)
def prefetch(keys: np.ndarray, experts: int, policy: int, scope_layer: bool, capacity: int,
             st: np.ndarray, ps: np.ndarray, ctr: np.ndarray) -> int:
    """Make ``keys`` (one layer's) resident as if used now, recency but not frequency; the
    cache is then trimmed to capacity like after an access. Returns how many were fetched."""
    if keys.shape[0] == 0 or policy == STATIC or capacity <= 0:
        return 0
    acc = ctr[_CACC]
    ctr[_CACC] += 1
    p = keys[0] // experts if scope_layer else 0
    fetched = 0
    for i in range(keys.shape[0]):
        key = keys[i]
        if st[_STAMP, key] == acc:
            continue
        st[_STAMP, key] = acc
        st[_LSTEP, key] = ctr[_CSTEP]
        st[_SEQ, key] = ctr[_CSEQ]
        ctr[_CSEQ] += 1
        if st[_RES, key]:
            if policy != FIFO:
                _unlink(st[_PREV], st[_NEXT], ps[_HEAD], ps[_TAIL], p, key)
                _push_head(st[_PREV], st[_NEXT], ps[_HEAD], ps[_TAIL], p, key)
        else:
            _admit(st, ps, p, key)
            fetched += 1
    nuk = np.zeros(0, dtype=np.int64)
    while ps[_COUNT, p] > capacity:
        victim = ps[_TAIL, p]
        if policy == LFU:
            victim = _victim(st, ps, p, policy, acc, nuk)
        elif policy == FIFO:
            key = victim
            while key >= 0 and st[_STAMP, key] == acc:
                key = st[_PREV, key]
            if key >= 0:
                victim = key
        _evict(st, ps, p, victim)
    return fetched


@njit(cache=True)
def segment_hits(ids: np.ndarray, starts: np.ndarray, segment_tokens: int, experts: int,
                 capacity: int, scope_layer: bool) -> tuple[np.ndarray, np.ndarray]:
    """Segment-cache best hits (SCH): per segment, the uses of its ``capacity`` most used experts.

    Segments are ``segment_tokens`` consecutive tokens, restarted at every sequence start in
    ``starts`` (sorted, first 0); returns ``(hits, uses)`` per layer, counted per token pick.
    With ``device`` scope the ``capacity`` most used (layer, expert) keys of the segment count
    (equal counts: the lower layer, then expert, is taken first).
    """
    n_tok, layers, k = ids.shape
    hits = np.zeros(layers, dtype=np.int64)
    uses = np.zeros(layers, dtype=np.int64)
    counts = np.zeros(layers * experts, dtype=np.int64)
    n_seq = starts.shape[0]
    for q in range(n_seq):
        end = starts[q + 1] if q + 1 < n_seq else n_tok
        for t0 in range(starts[q], end, segment_tokens):
            t1 = min(end, t0 + segment_tokens)
            counts[:] = 0
            for t in range(t0, t1):
                for layer in range(layers):
                    for j in range(k):
                        e = ids[t, layer, j]
                        if e >= 0:
                            counts[layer * experts + e] += 1
                            uses[layer] += 1
            if capacity <= 0:
                continue
            if scope_layer:
                for layer in range(layers):
                    row = np.sort(counts[layer * experts:(layer + 1) * experts])
                    take = min(capacity, experts)
                    hits[layer] += row[experts - take:].sum()
            else:
                order = np.argsort(-counts, kind="mergesort")     # ties: lower key first
                take = min(capacity, layers * experts)
                for i in range(take):
                    key = order[i]
                    hits[key // experts] += counts[key]
    return hits, uses


# -- Python entry points ----------------------------------------------------------------------
def check_ids(ids: np.ndarray, experts: int) -> np.ndarray:
    """``ids`` as a C-contiguous ``(T, L, k)`` int32/int64 array with values in ``[-1, E)``."""
    arr = np.asarray(ids)
    if arr.ndim != 3:
        raise ValueError(f"routing ids must have shape (tokens, layers, k); got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"routing ids must be integers; got {arr.dtype}")
    if arr.dtype not in (np.int32, np.int64) or not arr.flags.writeable:
        arr = arr.astype(np.int32 if arr.dtype.itemsize <= 4 else np.int64)   # one compiled variant
    arr = np.ascontiguousarray(arr)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -1 or hi >= experts:
            raise ValueError(f"expert ids must lie in [-1, {experts - 1}]; found {lo}..{hi}")
    return arr


def policy_code(policy: str, allowed: tuple[str, ...] = tuple(POLICY_CODES)) -> int:
    """Kernel code of a policy name (``ValueError`` listing the choices)."""
    if policy not in allowed:
        raise ValueError(f"unknown cache policy {policy!r}; known: {', '.join(allowed)}")
    return POLICY_CODES[policy]


def _scope_layer(scope: str) -> bool:
    if scope not in SCOPES:
        raise ValueError(f"unknown cache scope {scope!r}; known: {', '.join(SCOPES)}")
    return scope == "layer"


def fill_keys(popularity: np.ndarray, capacity: int, scope_layer: bool) -> np.ndarray:
    """Keys of the ``capacity`` most popular experts per partition, least popular first.

    Ties go to the lower expert (key) index: it ranks as more popular.
    """
    pop = np.asarray(popularity, dtype=np.float64)
    layers, experts = pop.shape
    if capacity <= 0:
        return np.zeros(0, dtype=np.int64)
    if scope_layer:
        take = min(capacity, experts)
        parts = []
        for layer in range(layers):
            top = np.argsort(-pop[layer], kind="stable")[:take]
            parts.append(layer * experts + top[::-1])
        return np.concatenate(parts).astype(np.int64)
    take = min(capacity, layers * experts)
    top = np.argsort(-pop.ravel(), kind="stable")[:take]
    return top[::-1].astype(np.int64)


def trace_counts(ids: np.ndarray, experts: int) -> np.ndarray:
    """``(L, E)`` picks per (layer, expert) in a trace (``-1`` ignored)."""
    arr = np.asarray(ids)
    layers = arr.shape[1]
    counts = np.zeros((layers, experts), dtype=np.int64)
    for layer in range(layers):
        col = arr[:, layer, :].ravel()
        counts[layer] = np.bincount(col[col >= 0], minlength=experts)[:experts]
    return counts


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Hits and misses per MoE layer of one replay (distinct (step, layer, expert) uses;
    for ``segment``, token picks)."""

    hits: np.ndarray       # (L,) int64
    misses: np.ndarray     # (L,) int64

    @property
    def accesses(self) -> int:
        return int(self.hits.sum() + self.misses.sum())

    @property
    def hit_rate(self) -> float:
        """Hits / accesses over all layers (0 for an empty trace)."""
        total = self.accesses
        return float(self.hits.sum()) / total if total else 0.0


REPLAY_POLICIES = ("lru", "lfu", "fifo", "static", "window", "belady", "segment")


def replay_trace(ids: np.ndarray, experts: int, capacity: int, policy: str = "lru", *,
                 scope: str = "layer", tokens_per_step: int = 1, window: int = 1,
                 popularity: np.ndarray | None = None, warm: bool = False,
                 segment_tokens: int = 16,
                 sequence_starts: np.ndarray | None = None) -> ReplayResult:
    """Hit and miss counts of ``policy`` replayed over ``ids`` (``(T, L, k)``, -1 ignored).

    ``capacity`` is experts per layer (``scope="layer"``) or per device (``"device"``).
    ``popularity`` (``(L, E)``) ranks experts for ``static`` and for ``warm`` pre-filling; when
    it is None they use the trace's own counts (an oracle). ``segment`` is the SCH bound over
    segments of ``segment_tokens`` tokens (restarted at ``sequence_starts``).
    """
    if policy not in REPLAY_POLICIES:
        raise ValueError(f"unknown cache policy {policy!r}; known: {', '.join(REPLAY_POLICIES)}")
    scope_layer = _scope_layer(scope)
    arr = check_ids(ids, experts)
    if capacity < 0:
        raise ValueError(f"cache capacity must be >= 0 experts; got {capacity}")
    if tokens_per_step < 1 or window < 1 or segment_tokens < 1:
        raise ValueError("tokens_per_step, window and segment_tokens must be >= 1")
    if policy == "segment":
        starts = (np.zeros(1, dtype=np.int64) if sequence_starts is None
                  else np.asarray(sequence_starts, dtype=np.int64))
        if starts.size == 0 or starts[0] != 0:
            starts = np.concatenate([[0], starts]).astype(np.int64)
        hits, uses = segment_hits(arr, starts, segment_tokens, experts, capacity, scope_layer)
        return ReplayResult(hits, uses - hits)
    code = POLICY_CODES[policy]
    pop = popularity
    if pop is not None:
        pop = np.asarray(pop, dtype=np.float64)
        if pop.shape != (arr.shape[1], experts):
            raise ValueError(f"popularity must have shape {(arr.shape[1], experts)}; got {pop.shape}")
    if code == STATIC or warm:
        if pop is None:
            pop = trace_counts(arr, experts).astype(np.float64)
        keys = fill_keys(pop, capacity, scope_layer)
    else:
        keys = np.zeros(0, dtype=np.int64)
    hits, misses = replay(arr, tokens_per_step, experts, code, scope_layer, capacity, window, keys)
    return ReplayResult(hits, misses)


# -- the simulator's per-step cache -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CacheStep:
    """What one engine step did to the expert cache."""

    hits: np.ndarray        # (L,) int64: distinct (layer, expert) accesses of the step found resident
    misses: np.ndarray      # (L,) int64: distinct experts fetched on demand in each layer
    miss_layer: np.ndarray  # (m,) int64  } one entry per missed (layer, expert):
    miss_expert: np.ndarray # (m,) int64  } its layer, expert id and how many of the
    miss_tokens: np.ndarray # (m,) int64  } step's tokens picked it


class ExpertCache:
    """A device's expert cache, stepped by the simulator once per engine step.

    ``capacity`` counts experts per layer (``scope="layer"``) or per device (``"device"``); a
    capacity of at least ``experts`` (``layers * experts`` for a device) makes the cache
    *unbounded*: every expert is resident and every access hits. ``popularity`` (``(L, E)``)
    ranks experts for ``static`` (required) and, with ``warm``, pre-fills the cache with the
    most popular ones. The model (steps, order inside a step, policies) is the module's.
    """

    POLICIES = ("lru", "lfu", "fifo", "static", "window")

    def __init__(self, layers: int, experts: int, capacity: int, policy: str = "lru", *,
                 scope: str = "layer", window: int = 1, popularity: np.ndarray | None = None,
                 warm: bool = True) -> None:
        if layers < 1 or experts < 1:
            raise ValueError(f"an expert cache needs >= 1 layer and expert; got {layers} x {experts}")
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0 experts; got {capacity}")
        if window < 1:
            raise ValueError(f"window must be >= 1 step; got {window}")
        self.layers = layers
        self.experts = experts
        self.capacity = capacity
        self.policy = policy
        self.scope = scope
        self.window = window
        self._code = policy_code(policy, self.POLICIES)
        self._scope_layer = _scope_layer(scope)
        pop = None
        if popularity is not None:
            pop = np.asarray(popularity, dtype=np.float64)
            if pop.shape != (layers, experts):
                raise ValueError(f"popularity must have shape {(layers, experts)}; got {pop.shape}")
        if self._code == STATIC and pop is None and not self.unbounded:
            raise ValueError("the static policy needs a popularity (L, E) to choose its experts")
        self._st, self._ps, self._ctr = new_state(layers, experts, self._scope_layer)
        if self.unbounded:
            self._st[_RES, :] = 1
            self._code = STATIC                      # nothing is ever evicted or fetched
        elif pop is not None and (warm or self._code == STATIC):
            fill(self._st, self._ps, self._ctr, fill_keys(pop, capacity, self._scope_layer),
                 experts, self._scope_layer)
        self._out = np.zeros(2 * layers + 3 * layers * experts, dtype=np.int64)
        self._buf = np.zeros(experts, dtype=np.int64)

    @property
    def unbounded(self) -> bool:
        """True when every expert fits: nothing is ever fetched."""
        total = self.experts if self.scope == "layer" else self.layers * self.experts
        return self.capacity >= total

    def step(self, ids: np.ndarray) -> CacheStep:
        """Route one engine step's tokens (``ids``: ``(tokens, L, k)`` int, -1 ignored)."""
        arr = np.asarray(ids)
        if arr.ndim != 3 or arr.shape[1] != self.layers:
            raise ValueError(f"ids must have shape (tokens, {self.layers}, k); got {arr.shape}")
        if arr.dtype != np.int64 and arr.dtype != np.int32:
            arr = arr.astype(np.int64)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        n = cache_step(arr, self.experts, self._code, self._scope_layer, self.capacity,
                       self.window, self._st, self._ps, self._ctr, self._out, self._buf)
        if n < 0:
            raise ValueError(f"expert ids must lie in [-1, {self.experts - 1}]")
        layers = self.layers
        out = self._out[:2 * layers + 3 * n].copy()
        return CacheStep(hits=out[:layers], misses=out[layers:2 * layers],
                         miss_layer=out[2 * layers:2 * layers + n],
                         miss_expert=out[2 * layers + n:2 * layers + 2 * n],
                         miss_tokens=out[2 * layers + 2 * n:])

    def insert(self, layer: int, experts: np.ndarray) -> int:
        """Prefetch ``experts`` of ``layer``: make them resident (evicting by the policy) as if
        used now; returns how many were fetched (not already resident; 0 for ``static``, whose
        set never changes, and for an unbounded cache)."""
        if not 0 <= layer < self.layers:
            raise ValueError(f"layer must lie in [0, {self.layers - 1}]; got {layer}")
        ex = np.asarray(experts, dtype=np.int64).ravel()
        if ex.size and (ex.min() < 0 or ex.max() >= self.experts):
            raise ValueError(f"expert ids must lie in [0, {self.experts - 1}]")
        return int(prefetch(layer * self.experts + ex, self.experts, self._code,
                            self._scope_layer, self.capacity, self._st, self._ps, self._ctr))

    def resident(self, layer: int) -> np.ndarray:
        """``(E,)`` bool: which experts of ``layer`` are resident now."""
        if not 0 <= layer < self.layers:
            raise ValueError(f"layer must lie in [0, {self.layers - 1}]; got {layer}")
        return self._st[_RES, layer * self.experts:(layer + 1) * self.experts].astype(bool)

    def resident_count(self) -> int:
        """Experts resident now, over all layers."""
        return int(self._st[_RES].sum())


# -- hit rate against cache size --------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CacheCurve:
    """Hit rate of each policy at each cache size, replayed over one routing trace.

    ``hits`` and ``accesses`` are ``(sizes, policies)``: distinct (step, layer, expert) uses
    for the cache policies, token picks for ``segment`` (equal for one token per step).
    """

    sizes: tuple[int, ...]      # cache capacity in experts: per layer, or per device
    policies: tuple[str, ...]
    hits: np.ndarray
    accesses: np.ndarray
    scope: str
    top_k: int                  # slots per token and layer in the trace
    experts: int
    layers: int
    tokens: int                 # tokens replayed (after any warm-up)
    tokens_per_step: int
    window: int
    segment_tokens: int
    warm: bool

    @property
    def hit_rate(self) -> np.ndarray:
        """``(sizes, policies)`` hits / accesses (0 where nothing was accessed)."""
        rate: np.ndarray = np.divide(self.hits, self.accesses, out=np.zeros(self.hits.shape),
                                     where=self.accesses > 0)
        return rate


def cache_curve(ids: np.ndarray, experts: int, sizes: tuple[int, ...] | list[int],
                policies: tuple[str, ...] | list[str], *, scope: str = "layer",
                tokens_per_step: int = 1, window: int = 1, segment_tokens: int = 16,
                warm: bool = False, warmup_tokens: int = 0,
                sequence_starts: np.ndarray | None = None) -> CacheCurve:
    """Replay ``ids`` (``(T, L, k)``) for every size and policy.

    The first ``warmup_tokens`` tokens are not replayed: they give the popularity that ranks
    experts for ``static`` and for ``warm`` pre-filling. Without a warm-up the popularity is
    counted over the whole trace (an oracle: the static-hot set is the best fixed set).
    """
    arr = check_ids(ids, experts)
    if not 0 <= warmup_tokens < max(arr.shape[0], 1):
        raise ValueError(f"warmup_tokens must lie in [0, {arr.shape[0] - 1}]; got {warmup_tokens}")
    for policy in policies:
        if policy not in REPLAY_POLICIES:
            raise ValueError(f"unknown cache policy {policy!r}; known: {', '.join(REPLAY_POLICIES)}")
    head, body = arr[:warmup_tokens], arr[warmup_tokens:]
    popularity = trace_counts(head if warmup_tokens else body, experts).astype(np.float64)
    starts = None
    if sequence_starts is not None:
        s = np.asarray(sequence_starts, dtype=np.int64) - warmup_tokens
        starts = np.unique(np.concatenate([[0], s[s > 0]]))
    hits = np.zeros((len(sizes), len(policies)), dtype=np.int64)
    accesses = np.zeros_like(hits)
    for i, size in enumerate(sizes):
        for j, policy in enumerate(policies):
            got = replay_trace(body, experts, int(size), policy, scope=scope,
                               tokens_per_step=tokens_per_step, window=window,
                               popularity=popularity, warm=warm, segment_tokens=segment_tokens,
                               sequence_starts=starts)
            hits[i, j] = got.hits.sum()
            accesses[i, j] = got.accesses
    return CacheCurve(sizes=tuple(int(s) for s in sizes), policies=tuple(policies), hits=hits,
                      accesses=accesses, scope=scope, top_k=int(arr.shape[2]), experts=experts,
                      layers=int(arr.shape[1]), tokens=int(body.shape[0]),
                      tokens_per_step=tokens_per_step, window=window,
                      segment_tokens=segment_tokens, warm=warm)
