"""CPU engine: llama.cpp through llama-cpp-python, running a GGUF model in process.

Concurrency: one llama.cpp context can run one generation at a time, so every engine
instance owns a single worker thread and requests queue behind each other in arrival
order (run several instances, each with its own model, for parallel calls). Generation
runs in that thread and hands text to the event loop through an asyncio queue.

Conversation states: one context holds one token sequence, so a turn of another call (or a
post-call summary) replaces what this call's last turn left there, and its next turn would
read the whole conversation again. After every generation the engine keeps a copy of the
context's state (the KV cache of the evaluated tokens, about 12 KB per token for the 0.5B
model), up to ``state_cache_mb``, least recently used first out; the shared prefix evaluated at
warm-up is kept apart and never evicted. Before a generation it loads the kept state that
shares the longest prefix with the new prompt when that saves evaluating enough tokens, so a
turn evaluates only what is new since its call's last turn. A copy whose tokens a newer copy
continues (the same conversation, one turn older) is dropped.

Continuing a reply: a request's ``assistant_prefix`` is appended to the rendered prompt (after the
generation prompt) and tokenized with it. The reply that produced that prefix left those tokens
in the context (or in its kept state), so the continuation evaluates only the few tokens the
prefix adds. Grammars built from a JSON schema are kept (``grammar_cache`` of them, least recently
used first out), keyed on the schema's JSON (property order included: the grammar follows it):
the tools' schema is the same on every tool call of an agent. A constrained token is checked
against the grammar among the likely tokens first, the whole vocabulary only when none of them
fits (:mod:`phoneagent.llm.engines.llama_grammar`).

Abort: :meth:`LlamaCppEngine.abort` sets a flag that the worker checks after every
sampled token, before the next one is computed, and wakes the consumer so its stream
ends at once; the worker drops whatever it was computing when the flag was set.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phoneagent.llm.engines.base import (
    FINISH_ABORT,
    FINISH_LENGTH,
    FINISH_STOP,
    BaseLlmEngine,
    Delta,
    LlmRequest,
    template_messages,
    warm_up_by_streaming,
)
from phoneagent.llm.engines.llama_grammar import install as install_top_first_grammar
from phoneagent.llm.models import DEFAULT_MODEL, model_path
from phoneagent.runtime.errors import EngineFailure, InvalidArgument, PhoneAgentError, Unavailable
from phoneagent.runtime.modelfiles import MissingModelError

if TYPE_CHECKING:
    from phoneagent.llm.settings import LlmSettings

log = logging.getLogger(__name__)

_WAKE = ("wake",)
_WORTH_RESTORING = 64  # tokens: below this, evaluating them is cheaper than loading a state
_CHUNK = 32  # prompt tokens evaluated between two checks for an abort
_SAME_CONVERSATION = 8  # a kept state all but this many of whose tokens a newer one continues


def _import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError:
        raise MissingModelError(
            "the llama.cpp engine needs llama-cpp-python", extra="llm", package="llama-cpp-python==0.3.36"
        ) from None
    return llama_cpp


@dataclass
class _Job:
    request_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    cancel: threading.Event = field(default_factory=threading.Event)
    prompt_tokens: int | None = None
    prompt_evaluated_tokens: int | None = None  # the prompt less the prefix the context held
    completion_tokens: int = 0

    def emit(self, *item: Any) -> None:
        """Hand an item to the consumer (called from the worker thread)."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def final(self, reason: str) -> Delta:
        return Delta(
            finish_reason=reason,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            prompt_evaluated_tokens=self.prompt_evaluated_tokens,
        )


@dataclass
class _State:
    """A copy of the context's state: its evaluated tokens and the serialised KV cache."""

    tokens: list[int]
    input_ids: Any  # the engine's whole token array, as llama-cpp-python keeps it
    data: Any  # ctypes buffer
    size: int


class LlamaCppEngine(BaseLlmEngine):
    """llama.cpp chat engine; the prompt is built with the GGUF's own chat template."""

    name = "llama_cpp"
    structured_output = True  # json_schema constrains the output (tool calls, summaries)
    keeps_prefix = True  # a later request reuses what an earlier one evaluated (see the module doc)
    continues_reply = True  # assistant_prefix is appended to the prompt (see the module doc)

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        model_path: str | Path | None = None,
        n_ctx: int = 4096,
        n_threads: int = 1,
        n_threads_batch: int | None = None,
        n_batch: int = 256,
        n_gpu_layers: int = 0,
        seed: int | None = None,
        state_cache_mb: int = 512,
        grammar_cache: int = 8,
    ) -> None:
        super().__init__()
        self._lib = _import_llama_cpp()
        if n_ctx < 256 or n_threads < 1 or n_batch < 1:
            raise InvalidArgument("n_ctx must be at least 256; n_threads and n_batch at least 1")
        if state_cache_mb < 0 or grammar_cache < 0:
            raise InvalidArgument("state_cache_mb and grammar_cache must not be negative")
        self._state_budget = state_cache_mb * 1024 * 1024
        self._model_key = model
        self._model_path = Path(model_path) if model_path else None
        self._params = {
            "n_ctx": n_ctx,
            "n_threads": n_threads,
            # Prompt processing is batched and scales with threads; decoding scales less, so the
            # two are separate settings (PA_LLM_THREADS, PA_LLM_BATCH_THREADS).
            "n_threads_batch": n_threads_batch or n_threads,
            "n_batch": n_batch,
            "n_gpu_layers": n_gpu_layers,
        }
        if seed is not None:  # otherwise llama.cpp picks a random seed
            self._params["seed"] = seed
        self._llm: Any = None
        self._formatter: Any = None
        self._executor: ThreadPoolExecutor | None = None
        self._jobs: dict[str, _Job] = {}
        # State of the context right after the warm-up: the prefix every conversation shares.
        self._pinned: _State | None = None
        # States left by recent generations, least recently used first (worker thread only).
        self._kept: list[_State] = []
        self.prefix_restores = 0  # how often the pinned prefix replaced the context (metrics, tests)
        self.state_restores = 0  # how often a conversation's kept state replaced the context
        # Grammars by the canonical JSON of their schema, least recently used first (worker thread).
        self._grammars: OrderedDict[str, Any] = OrderedDict()
        self._grammar_cache = grammar_cache
        self.grammars_built = 0  # how often a schema was turned into a grammar (metrics, tests)

    @classmethod
    def options_from(cls, settings: LlmSettings) -> dict[str, Any]:
        return {
            **super().options_from(settings),
            "n_threads": settings.threads,
            "n_threads_batch": settings.batch_threads,
            "n_ctx": settings.context,
            "state_cache_mb": settings.state_cache_mb,
        }

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def _check_ready(self) -> None:
        if self._llm is None or self._executor is None:
            raise Unavailable("the llama.cpp engine is not loaded")

    def load(self) -> None:
        """Load the model (blocking: run it in a thread). Assembles the weights on first use."""
        if self._llm is not None:
            return
        path = self._model_path or model_path(self._model_key)
        if not path.is_file():
            raise MissingModelError(f"model file {path.name} not found", extra="llm")
        started = time.monotonic()
        try:
            llm = self._lib.Llama(model_path=str(path), verbose=False, **self._params)
        except (ValueError, RuntimeError) as exc:
            raise EngineFailure(f"llama.cpp could not load {path.name}") from exc
        self._formatter = self._chat_formatter(llm)
        install_top_first_grammar(self._lib, llm)
        self._llm = llm
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        log.info(
            "llm model loaded",
            extra={
                "engine": self.name,
                "model": path.name,
                "load_s": round(time.monotonic() - started, 3),
                "n_ctx": self._params["n_ctx"],
                "n_threads": self._params["n_threads"],
            },
        )

    def _chat_formatter(self, llm: Any) -> Any:
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise EngineFailure("the model file carries no chat template")

        def token_text(token: int) -> str:
            return llm.detokenize([token], special=True).decode("utf-8", "ignore") if token >= 0 else ""

        eos = llm.token_eos()
        return self._lib.llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=token_text(eos),
            bos_token=token_text(llm.token_bos()),
            stop_token_ids=[eos],
        )

    async def close(self) -> None:
        """Abort every request, wait for the worker to stop, and free the model."""
        executor, self._executor = self._executor, None  # new streams are refused from here on
        for request_id in list(self._jobs):
            await self.abort(request_id)
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        self._pinned = None
        self._kept = []
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.close()

    async def warm_up(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> None:
        """Evaluate the shared prefix once and keep a copy of the context's state.

        One llama.cpp context holds one token sequence: a prompt that starts differently (a
        post-call summary, another agent's prompt) replaces it, and the next turn of any call
        would read the whole persona and tool schemas again (about 20 s on two CPU cores
        instead of 2 s, measured). A request whose prompt shares more of the pinned prefix
        than of the current context restores the copy first, in tens of milliseconds.
        """
        await warm_up_by_streaming(self, messages, tools)
        if self._executor is None:
            raise Unavailable("the llama.cpp engine is not loaded")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._pin)

    def _pin(self) -> None:
        self._pinned = self._save()

    def _save(self) -> _State:
        """Worker thread: copy the context's state (the KV cache of its tokens, not the logits:
        a generation always evaluates at least one token after a load, which refreshes them)."""
        llm, lib = self._llm, self._lib
        ctx = llm._ctx.ctx
        size = int(lib.llama_state_get_size(ctx))
        data = (ctypes.c_uint8 * size)()
        written = int(lib.llama_state_get_data(ctx, data, size))
        if written > size:
            raise EngineFailure("llama.cpp state larger than it said")
        return _State(llm.input_ids[: llm.n_tokens].tolist(), llm.input_ids.copy(), data, written)

    def _load(self, state: _State) -> None:
        llm, lib = self._llm, self._lib
        if int(lib.llama_state_set_data(llm._ctx.ctx, state.data, state.size)) != state.size:
            raise RuntimeError("llama.cpp did not take the state")
        llm.input_ids = state.input_ids.copy()
        llm.n_tokens = len(state.tokens)
        llm._requires_eval = True  # the logits are not part of the copy

    def _keep(self) -> None:
        """Worker thread: keep the context's state after a generation (see the module doc)."""
        if self._state_budget <= 0 or self._llm.n_tokens == 0:
            return
        try:
            state = self._save()
        except (RuntimeError, EngineFailure) as exc:
            log.warning("llm state not kept", extra={"engine": self.name, "error": type(exc).__name__})
            return
        prefix = self._llm.longest_token_prefix
        self._kept = [
            old
            for old in self._kept
            if prefix(old.tokens, state.tokens) < len(old.tokens) - _SAME_CONVERSATION
        ]
        self._kept.append(state)
        while self._kept and sum(k.size for k in self._kept) > self._state_budget:
            self._kept.pop(0)

    def _restore_prefix(self, prompt: list[int]) -> None:
        """Worker thread: load the kept state (the pinned prefix or a conversation's last turn)
        that shares the most of ``prompt``, when that saves evaluating enough of it."""
        prefix = self._llm.longest_token_prefix
        best, best_shared = None, self._held(prompt) + _WORTH_RESTORING
        for state in [*self._kept, *([self._pinned] if self._pinned is not None else [])]:
            shared = prefix(state.tokens, prompt)
            if shared >= best_shared:
                best, best_shared = state, shared
        if best is None:
            return
        try:
            self._load(best)
        except (RuntimeError, ValueError) as exc:
            if best is self._pinned:
                self._pinned = None  # never try a state that does not fit again
            else:
                self._kept.remove(best)
            log.warning("llm state not restored", extra={"engine": self.name, "error": type(exc).__name__})
            self._llm.reset()
            return
        if best is self._pinned:
            self.prefix_restores += 1
        else:
            self._kept.remove(best)  # most recently used: moves to the end when kept again
            self._kept.append(best)
            self.state_restores += 1

    def _held(self, prompt: list[int]) -> int:
        """Worker thread: how many of ``prompt``'s first tokens the context already holds."""
        llm = self._llm
        return int(llm.longest_token_prefix(llm.input_ids[: llm.n_tokens].tolist(), prompt))

    def _evaluated(self, prompt: list[int]) -> int:
        """Worker thread: how many of ``prompt``'s tokens the next completion evaluates. llama.cpp
        keeps the longest prefix the context already holds and evaluates the rest (at least one
        token, which refreshes the logits when the whole prompt is held)."""
        return max(len(prompt) - self._held(prompt), 1)

    def _evaluate_abortably(self, job: _Job, prompt: list[int]) -> bool:
        """Worker thread: evaluate the prompt's new tokens (all but the last, which the completion
        evaluates to sample from) in chunks, checking for an abort between two. llama.cpp cannot
        stop in the middle of one evaluation, and a long prompt (a call taken over by another
        replica, a summary) takes seconds; a barge-in or hang-up waits one chunk at most.
        Returns False when the request was aborted."""
        llm = self._llm
        held = self._held(prompt)
        end = len(prompt) - 1
        if end - held <= _CHUNK:
            return not job.cancel.is_set()
        if held < llm.n_tokens:
            if not llm._ctx.kv_cache_seq_rm(-1, held, -1):
                return not job.cancel.is_set()  # the completion evaluates it all, unchunked
            llm.n_tokens = held
        while llm.n_tokens < end:
            if job.cancel.is_set():
                return False
            llm.eval(prompt[llm.n_tokens : min(llm.n_tokens + _CHUNK, end)])
        return not job.cancel.is_set()

    async def _abort(self, request_id: str) -> None:
        job = self._jobs.get(request_id)
        if job is None:
            return
        job.cancel.set()
        job.queue.put_nowait(_WAKE)
        log.debug("llm request aborted", extra={"engine": self.name, "request_id": request_id})

    async def _stream(self, request: LlmRequest) -> AsyncIterator[Delta]:
        if self._executor is None:
            raise Unavailable("the llama.cpp engine is not loaded")
        job = _Job(request.request_id, asyncio.get_running_loop())
        self._jobs[request.request_id] = job
        try:
            job.loop.run_in_executor(self._executor, self._run, job, request)
            async for delta in self._consume(job):
                yield delta
        finally:
            job.cancel.set()  # a consumer that stops early also stops the worker
            self._jobs.pop(request.request_id, None)

    async def _consume(self, job: _Job) -> AsyncIterator[Delta]:
        while True:
            item = await job.queue.get()
            if job.cancel.is_set():
                yield job.final(FINISH_ABORT)
                return
            kind = item[0]
            if kind == "text":
                yield Delta(
                    text=item[1],
                    completion_tokens=job.completion_tokens,
                    prompt_evaluated_tokens=job.prompt_evaluated_tokens,
                )
            elif kind == "end":
                yield job.final(item[1])
                return
            elif kind == "error":
                raise item[1]

    # --- worker thread ------------------------------------------------------------------------

    def _run(self, job: _Job, request: LlmRequest) -> None:
        if job.cancel.is_set():
            job.emit("end", FINISH_ABORT)
            return
        started = time.monotonic()
        try:
            finish = self._generate(job, request)
        except PhoneAgentError as exc:
            job.emit("error", exc)
            return
        except Exception as exc:  # llama.cpp failures surface as assorted exception types
            log.error(
                "llm generation failed",
                extra={"engine": self.name, "request_id": job.request_id, "error": type(exc).__name__},
            )
            job.emit("error", EngineFailure("llama.cpp generation failed"))
            return
        job.emit("end", finish)
        self._keep()
        log.debug(
            "llm generation finished",
            extra={
                "engine": self.name,
                "request_id": job.request_id,
                "finish": finish,
                "prompt_tokens": job.prompt_tokens,
                "completion_tokens": job.completion_tokens,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _generate(self, job: _Job, request: LlmRequest) -> str:
        prompt, stop = self._prompt(request)
        job.prompt_tokens = len(prompt)
        if len(prompt) >= self._params["n_ctx"]:
            raise InvalidArgument("the conversation does not fit the model's context window")

        self._restore_prefix(prompt)
        job.prompt_evaluated_tokens = self._evaluated(prompt)
        if not self._evaluate_abortably(job, prompt):
            return FINISH_ABORT

        def counting_stop(input_ids: Any, _logits: Any) -> bool:
            # Called after each token is sampled and before it is evaluated.
            job.completion_tokens = max(job.completion_tokens, len(input_ids) - len(prompt) + 1)
            return job.cancel.is_set()

        chunks: Iterator[dict[str, Any]] = self._llm.create_completion(
            prompt=prompt,
            stream=True,
            max_tokens=min(request.max_tokens, self._params["n_ctx"] - len(prompt)),
            temperature=request.temperature,
            stop=stop,
            grammar=self._grammar(request.json_schema),
            stopping_criteria=self._lib.StoppingCriteriaList([counting_stop]),
        )
        finish = FINISH_STOP
        try:
            for chunk in chunks:
                if job.cancel.is_set():
                    return FINISH_ABORT
                choice = chunk["choices"][0]
                if choice["text"]:
                    job.emit("text", choice["text"])
                if choice.get("finish_reason") == "length":
                    finish = FINISH_LENGTH
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        return FINISH_ABORT if job.cancel.is_set() else finish

    def _prompt(self, request: LlmRequest) -> tuple[list[int], list[str]]:
        try:
            formatted = self._formatter(messages=template_messages(request.messages), tools=request.tools)
        except Exception as exc:  # the template raises on conversations it cannot render
            raise InvalidArgument("the chat template cannot render these messages") from exc
        tokens = self._llm.tokenize(
            (formatted.prompt + request.assistant_prefix).encode("utf-8"),
            add_bos=not formatted.added_special,
            special=True,
        )
        stop = formatted.stop
        stops = [] if stop is None else [stop] if isinstance(stop, str) else list(stop)
        return tokens, stops

    def _grammar(self, schema: dict[str, Any] | None) -> Any:
        """Worker thread: the grammar for ``schema``, built once while it stays in the cache (a
        grammar is its rules' text: the sampler that walks it is made per completion)."""
        if schema is None:
            return None
        # Not sorted: the grammar writes an object's properties in the schema's order (the
        # tool's name before its arguments), so two orders are two grammars.
        key = json.dumps(schema, separators=(",", ":"))
        grammar = self._grammars.get(key)
        if grammar is not None:
            self._grammars.move_to_end(key)
            return grammar
        try:
            grammar = self._lib.LlamaGrammar.from_json_schema(key, verbose=False)
        except Exception as exc:  # unsupported schema keyword or malformed schema
            raise InvalidArgument("json_schema cannot be turned into a grammar") from exc
        self.grammars_built += 1
        if self._grammar_cache > 0:
            self._grammars[key] = grammar
            while len(self._grammars) > self._grammar_cache:
                self._grammars.popitem(last=False)
        return grammar
