"""A replica's engine: continuous batching with chunked prefill, paged KV, preemption.

Each step the scheduler (vLLM-style, decode first):

1. gives every running sequence that finished its prompt one decode position (1 + draft
   tokens with speculative decoding), growing its KV by a block when it crosses a block
   boundary; when no block is free it preempts the most recently admitted sequence
   (recompute: its blocks are freed and it re-queues at the front, its prompt now including
   what it generated);
2. continues partial prompts in chunks of ``chunked_prefill`` tokens;
3. admits waiting requests (FCFS, or by priority then arrival) while ``max_seqs`` and the
   step's ``max_batched_tokens`` allow and the KV cache holds the chunk.

With ``kv_reservation: full`` (TensorRT-LLM's GUARANTEED_NO_EVICT) a sequence takes the blocks of
its whole prompt and every output token when it is admitted, so step 1 never grows or preempts
and admission waits for room at the full length.

Without chunked prefill a prompt is computed whole (alone if it exceeds the token budget).
A decode-pool replica admits sequences whose prompt was computed elsewhere: it only needs
blocks for their KV. Durations come from :class:`~hwsim.perf.step.StepCost` (no FLOP here).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from hwsim.perf.batch import Batch
from hwsim.sim.kv_cache import BlockManager
from hwsim.spec.deployment import SchedulerLimits
from hwsim.workload.request import Request


@dataclass(slots=True, eq=False)
class Seq:
    """A request's progress on a replica."""

    req: Request
    prompt: int                  # tokens to prefill (input + generated after a preemption)
    prefilled: int = 0
    generated: int = 0
    cached: int = 0              # prompt tokens served from the prefix cache
    preemptions: int = 0
    first_scheduled_s: float = float("nan")
    first_token_s: float = float("nan")
    chunk: int = 0               # tokens of the prompt computed in the current step
    order: int = 0               # admission order (preemption picks the newest)
    cap: int = 0                 # tokens its KV blocks hold
    active: bool = False         # in the running set

    @property
    def decoding(self) -> bool:
        return self.prefilled >= self.prompt

    @property
    def kv_tokens(self) -> int:
        return self.prefilled + (self.generated if self.decoding else 0)

    @property
    def done(self) -> bool:
        return self.generated >= self.req.output_tokens


@dataclass(slots=True, eq=False)
class StepPlan:
    """What one step computes: prompt chunks and decode sequences.

    ``lazy``: a step of a decode run (see :class:`Scheduler`): ``kv`` holds the sequences' KV
    lengths, and the tokens it emits are owed to them until the scheduler syncs.
    """

    prefill: list[Seq] = field(default_factory=list)
    decode: list[Seq] = field(default_factory=list)
    kv: np.ndarray | None = None
    lazy: bool = False

    def batch(self, query_extra: int = 0) -> Batch:
        if self.kv is not None:
            return Batch(decode_kv_tokens=self.kv)
        return Batch(prefill_new_tokens=np.fromiter((s.chunk for s in self.prefill), np.int64, len(self.prefill)),
                     prefill_cached_tokens=np.fromiter((s.prefilled for s in self.prefill), np.int64,
                                                       len(self.prefill)),
                     prefill_completes=np.fromiter((s.prefilled + s.chunk >= s.prompt for s in self.prefill), bool,
                                                   len(self.prefill)),
                     decode_kv_tokens=np.array([s.prefilled + s.generated for s in self.decode],  # kv_tokens
                                               dtype=np.int64))

    @property
    def empty(self) -> bool:
        return not self.prefill and not self.decode

    @property
    def prefill_tokens(self) -> int:
        return sum(s.chunk for s in self.prefill)


class Scheduler:
    """One replica's queues and KV cache, and the batching policy above.

    **Decode runs.** When a step only decodes every running sequence, nothing is admitted (the
    queue is empty or its head cannot be: the sequence cap, the token budget or the KV cache
    bars it, and none of them eases while the same sequences decode) and no speculative tokens
    are drafted, the next steps repeat it until a sequence finishes, a request arrives, or
    (on-demand KV) the blocks the step's sequences grow into are not free. Such steps are
    planned without touching the sequences: the same decode list, KV lengths one higher each
    step, the blocks grown counted from each sequence's next block boundary (vectorised), and
    the tokens emitted counted in ``lag``; :meth:`sync` pays tokens and blocks out to the
    sequences (before anything reads them). The steps, their costs and every record are the
    same as planning each step afresh.
    """

    def __init__(self, limits: SchedulerLimits, kv: BlockManager, *, draft_tokens: int = 0,
                 prefills: bool = True, decodes: bool = True) -> None:
        self.limits = limits
        self.kv = kv
        self.draft = draft_tokens
        self.full = limits.kv_reservation == "full"
        self.prefills = prefills     # False for a decode-pool replica
        self.decodes = decodes       # False for a prefill-pool replica (its prompts move on)
        self.waiting: deque[Seq] = deque()
        self.running: list[Seq] = []
        self._order = 0
        self._run: list[Seq] | None = None   # the decode run's sequences, in running order
        self._armed = False                   # its lengths are taken (at its first lazy step)
        self._run_kv = np.zeros(0, np.int64)  # their KV lengths at the run's next step, less lag
        self._run_head: Seq | None = None     # the queue's head when the run began (barred)
        self.lag = 0          # decode steps of the run not yet paid out to its sequences
        self._headroom = 0    # steps (less lag) until the run's first sequence finishes
        self._first = np.zeros(0, np.int64)   # lag at which each needs its next KV block
        self._caps = np.zeros(0, np.int64)    # tokens each one's blocks hold, less what the lag grew

    def add(self, seq: Seq) -> None:
        if self.limits.policy == "priority":
            self._insert_by_priority(seq)
        else:
            self.waiting.append(seq)

    def _insert_by_priority(self, seq: Seq) -> None:
        key = (-seq.req.priority, seq.req.arrival_s)
        for i, other in enumerate(self.waiting):
            if (-other.req.priority, other.req.arrival_s) > key:
                self.waiting.insert(i, seq)
                return
        self.waiting.append(seq)

    def outstanding_tokens(self) -> int:
        """Tokens still to compute (prefill) or generate: the router's load measure."""
        self.sync()
        return sum(s.prompt - s.prefilled + s.req.output_tokens - s.generated
                   for s in (*self.running, *self.waiting))

    # -- forming a step ---------------------------------------------------------------------
    def plan(self, retry: bool = True) -> StepPlan:
        if self._run is not None:
            head = self.waiting[0] if self.waiting else None
            if head is self._run_head and (self._armed or self._arm()):
                grows = self._grows(self.lag)
                if grows <= self.kv.free:
                    if grows:
                        self.kv.take(grows)
                    return StepPlan(decode=self._run, kv=self._run_kv + self.lag, lazy=True)
            self._end_run()
        step = StepPlan()
        budget = self.limits.max_batched_tokens
        extra = 1 + self.draft
        if self.decodes and self.full:  # every decoding sequence holds its last token's block already
            step.decode = [s for s in self.running if s.active and s.prefilled >= s.prompt]
        for s in list(self.running) if self.decodes and not self.full else ():
            if s.active and s.prefilled >= s.prompt:
                need = s.prefilled + s.generated + extra
                if need <= s.cap or self._grow_or_preempt(s, need):
                    step.decode.append(s)
        budget -= len(step.decode) * (1 + self.draft)
        # partial prompts to continue (only chunked prefill leaves a running prompt partial: a whole
        # prompt completes in the step that computes it)
        partial = budget > 0 and self.limits.chunked_prefill_tokens is not None
        for s in [s for s in self.running if s.prefilled < s.prompt] if partial else ():
            if budget <= 0:
                break
            budget -= self._chunk(s, budget, step)
        while self.waiting and len(self.running) < self.limits.max_seqs and budget > 0:
            s = self.waiting[0]
            if not self.prefills:
                if not self._reserve(s, self._target(s, s.kv_tokens + 1)):
                    break
                self._admit(s)
                continue
            taken = self._chunk(s, budget, step, admitting=True)
            if taken == 0:
                break
            budget -= taken
        if retry and step.empty and not self.prefills and any(s.active for s in self.running):
            return self.plan(retry=False)  # a decode replica that only admitted sequences decodes them now
        self._start_run(step)
        return step

    # -- decode runs ------------------------------------------------------------------------
    def _start_run(self, step: StepPlan) -> None:
        """Mark a decode run after ``step`` when the steps after it can only repeat it (its
        lengths are taken at the next plan, so a run that an arrival ends at once costs O(1))."""
        dec = step.decode
        if self.draft or step.prefill or not dec or len(dec) != len(self.running):
            return
        self._run = dec
        self._armed = False
        self._run_head = self.waiting[0] if self.waiting else None

    def _arm(self) -> bool:
        """Take the run's lengths now; False when its next step cannot be lazy."""
        dec = self._run
        assert dec is not None
        if any(s.first_token_s != s.first_token_s for s in dec):  # NaN: a token not yet emitted
            return False
        gen = np.array([s.generated for s in dec], np.int64)
        self._run_kv = np.array([s.prefilled for s in dec], np.int64) + gen
        self._headroom = int((np.array([s.req.output_tokens for s in dec], np.int64) - gen).min())
        self._caps = np.array([s.cap for s in dec], np.int64)
        # a step at lag L needs kv + L + 1 tokens of KV: a new block once that exceeds the cap
        self._first = self._caps - self._run_kv
        self.lag = 0
        self._armed = self._headroom > 0 and bool((self._first >= 0).all())
        return self._armed

    def _grows(self, lag: int) -> int:
        """Blocks the run's sequences grow into at the step of ``lag`` (one per boundary crossed)."""
        d = lag - self._first
        return int(np.count_nonzero((d >= 0) & (d % self.kv.block_tokens == 0)))

    def sync(self) -> None:
        """Pay the decode run's owed tokens out to its sequences (the run goes on)."""
        if self.lag and self._armed and self._run is not None:
            lag, bt = self.lag, self.kv.block_tokens
            d = lag - 1 - self._first  # the last step's lag less each one's first boundary
            grown = np.where(d >= 0, d // bt + 1, 0)
            for s, g in zip(self._run, grown.tolist(), strict=True):
                s.generated += lag
                if g:
                    self.kv.assign(id(s), g)
                    s.cap += g * bt
            self._run_kv = self._run_kv + lag
            self._caps = self._caps + grown * bt
            self._first = self._caps - self._run_kv
            self._headroom -= lag
            self.lag = 0

    def _end_run(self) -> None:
        self.sync()
        self._run = None
        self._armed = False
        self._run_head = None

    def advance(self) -> list[Seq]:
        """Count a lazy step's tokens; at the run's first finish, sync, end the run and return
        the sequences that are done (in the step's order)."""
        self.lag += 1
        if self.lag < self._headroom:
            return []
        run = self._run
        assert run is not None
        self._end_run()
        return [s for s in run if s.generated >= s.req.output_tokens]

    def _admit(self, s: Seq) -> None:
        self.waiting.popleft()
        self._order += 1
        s.order = self._order
        s.active = True
        self.running.append(s)

    def _chunk(self, s: Seq, budget: int, step: StepPlan, *, admitting: bool = False) -> int:
        remaining = s.prompt - s.prefilled
        size = self.limits.chunked_prefill_tokens
        if size is None:  # whole prompts only; an oversized prompt runs alone
            if remaining > budget and not (budget == self.limits.max_batched_tokens and not step.prefill):
                return 0
            chunk = remaining
        else:
            chunk = min(remaining, size, budget)
        if chunk <= 0 or not self._reserve(s, self._target(s, s.prefilled + chunk)):
            return 0
        if admitting:
            self._admit(s)
        s.chunk = chunk
        step.prefill.append(s)
        return chunk

    def _target(self, s: Seq, tokens: int) -> int:
        """Tokens to hold for ``s`` now: ``tokens``, or its whole length under full reservation."""
        if self.full:
            return max(tokens, s.req.input_tokens + s.req.output_tokens + self.draft)
        return tokens

    def _reserve(self, s: Seq, tokens: int) -> bool:
        if not self.kv.reserve(id(s), tokens):
            return False
        s.cap = self.kv.held(id(s)) * self.kv.block_tokens
        return True

    def _grow_or_preempt(self, s: Seq, tokens: int) -> bool:
        while not self._reserve(s, tokens):
            victim = self.running[-1]  # the newest: running is in admission order
            self._preempt(victim)
            if victim is s:
                return False
        return True

    def _preempt(self, s: Seq) -> None:
        """Recompute preemption: free the KV, re-queue first, prompt includes generated tokens."""
        self._drop(s)
        s.prompt = s.req.input_tokens + s.generated
        s.prefilled = 0
        s.preemptions += 1
        self.waiting.appendleft(s)

    def _drop(self, s: Seq) -> None:
        if self._run is not None:
            self._end_run()
        self.running.remove(s)
        self.kv.release(id(s))
        s.active = False
        s.cap = 0

    def finish(self, s: Seq) -> None:
        self._drop(s)

    def detach(self, s: Seq) -> None:
        """Remove a sequence whose KV moves to another replica (disaggregation)."""
        self._drop(s)
