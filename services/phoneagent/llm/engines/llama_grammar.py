"""Constrained sampling for the llama.cpp engine that checks the likely tokens first.

llama-cpp-python puts llama.cpp's grammar sampler at the head of the sampler chain, so every
token of a tool call is checked against the grammar over the whole vocabulary (151,936
tokens for Qwen2.5) before top-k cuts it to 40. On two CPU cores that check costs as much as
the model's own forward pass: a booking's tool call decoded at 60-75 ms a token under the
grammar against ~35 ms free.

:class:`TopFirstGrammar` checks the ``top`` most likely tokens first and hands the rest of the
chain only those the grammar allows; when none of them is allowed (the model wants something
the grammar forbids, "I'm sorry" where a JSON object must start) it checks the whole
vocabulary as before. Greedy decoding picks the same token either way; sampling picks among the
allowed tokens of the likely ones, which top-k kept anyway. The grammar's state moves on with
each chosen token exactly as llama.cpp's own sampler does (its accept is forwarded).

The sampler is a llama.cpp sampler implemented through ctypes callbacks, the mechanism
llama-cpp-python uses for its own custom samplers; it is installed per generation by
:func:`install`, which replaces the Llama object's private ``_init_sampler`` (pinned:
llama-cpp-python 0.3.36) only for requests with a grammar.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import math
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

TOP = 40  # tokens checked first: llama-cpp-python's default top-k


class TopFirstGrammar:
    """One generation's grammar sampler (see the module docstring). Counts how many tokens
    were chosen from the likely ones (``top_steps``) and how many needed the whole vocabulary
    (``full_steps``)."""

    def __init__(self, lib: Any, vocab: Any, grammar: Any, top: int = TOP) -> None:
        self._lib = lib
        self._grammar = lib.llama_sampler_init_grammar(
            vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._grammar:
            raise ValueError("llama.cpp rejected the grammar")
        self._top = top
        self._buf = (lib.llama_token_data * top)()
        self._view = np.ctypeslib.as_array(self._buf)
        self.top_steps = 0
        self.full_steps = 0

        # ctypes keeps a callback alive only while a Python reference to it exists.
        self._callbacks = (
            lib.llama_sampler_i_accept(lambda _smpl, token: lib.llama_sampler_accept(self._grammar, token)),
            lib.llama_sampler_i_apply(lambda _smpl, cur_p: self._apply(cur_p)),
            lib.llama_sampler_i_reset(lambda _smpl: lib.llama_sampler_reset(self._grammar)),
        )
        self._iface = lib.llama_sampler_i()
        self._iface.accept, self._iface.apply, self._iface.reset = self._callbacks
        self._sampler = lib.llama_sampler()
        self._sampler.iface = ctypes.pointer(self._iface)
        self._sampler.ctx = None

    def add_to(self, chain: Any) -> None:
        """Append to a llama-cpp-python ``LlamaSampler`` chain, which must not free this
        sampler itself (llama.cpp would ``delete`` memory Python owns): like llama-cpp-python's
        own custom samplers it is taken out of the chain before the chain is freed, and the
        grammar it wraps is freed after that."""
        self._lib.llama_sampler_chain_add(chain.sampler, ctypes.pointer(self._sampler))
        chain.custom_samplers.append((self._lib.llama_sampler_chain_n(chain.sampler) - 1, self))
        chain._exit_stack.callback(self.free)  # runs before the chain's own free (LIFO)

    def free(self) -> None:
        if self._grammar:
            self._lib.llama_sampler_free(self._grammar)
            self._grammar = None

    def _apply(self, cur_p: Any) -> None:
        try:
            if self._apply_top(cur_p.contents):
                self.top_steps += 1
                return
        except Exception:  # an exception cannot cross the C callback: check every token instead
            log.exception("top-first grammar check failed; checking the whole vocabulary")
        self.full_steps += 1
        self._lib.llama_sampler_apply(self._grammar, cur_p)

    def _apply_top(self, arr: Any) -> bool:
        """Keep only the allowed tokens among the ``top`` most likely; False when none is."""
        n = int(arr.size)
        if n <= self._top:
            return False
        view = np.ctypeslib.as_array(arr.data, shape=(n,))
        likely = np.argpartition(view["logit"], n - self._top)[n - self._top :]
        self._view[:] = view[likely]
        small = self._lib.llama_token_data_array(data=self._buf, size=self._top, selected=-1, sorted=False)
        self._lib.llama_sampler_apply(self._grammar, ctypes.byref(small))
        allowed = self._view[self._view["logit"] > -math.inf]
        if not len(allowed):
            return False
        view[: len(allowed)] = allowed
        arr.size = len(allowed)
        arr.selected = -1
        arr.sorted = False
        return True


def install(lib: Any, llm: Any, on_sampler: Any = None) -> None:
    """Make ``llm`` (a ``llama_cpp.Llama``) sample constrained requests through
    :class:`TopFirstGrammar`; ``on_sampler`` is called with each one made (counters, tests).
    Requests without a grammar, and the options the engine never uses (mirostat, logits
    processors), keep llama-cpp-python's own chain."""
    original = llm._init_sampler

    @functools.wraps(original)
    def init_sampler(**kw: Any) -> Any:
        grammar = kw.get("grammar")
        if grammar is None or kw.get("mirostat_mode") or kw.get("logits_processor") is not None:
            return original(**kw)
        chain = lib._internals.LlamaSampler()
        chain.add_penalties(
            n_vocab=llm._n_vocab,
            penalty_last_n=llm.last_n_tokens_size,
            penalty_repeat=kw.get("repeat_penalty", 1.0),
            penalty_freq=kw.get("frequency_penalty", 0.0),
            penalty_present=kw.get("presence_penalty", 0.0),
        )
        sampler = TopFirstGrammar(lib, llm._model.vocab, grammar)
        sampler.add_to(chain)
        if on_sampler is not None:
            on_sampler(sampler)
        temp = kw.get("temp", 0.8)
        if temp == 0.0:
            chain.add_greedy()
        elif temp < 0.0:
            chain.add_dist(llm._seed)
        else:
            chain.add_top_k(kw.get("top_k", TOP))
            chain.add_typical(kw.get("typical_p", 1.0), 1)
            chain.add_top_p(kw.get("top_p", 0.95), 1)
            chain.add_min_p(kw.get("min_p", 0.05), 1)
            chain.add_temp(temp)
            chain.add_dist(llm._seed)
        return chain

    llm._init_sampler = init_sampler
