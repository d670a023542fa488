"""GPU engine: vLLM in process (``AsyncLLM``), for the CUDA image.

vLLM batches concurrent requests itself, so unlike the llama.cpp engine any number of
streams may run at once. Prompts are built with the model's own chat template (tools
included); JSON-schema output uses vLLM's structured outputs. A request's ``assistant_prefix``
follows the generation prompt in the prompt text (a tool call the free reply opened goes on in
the same sequence; prefix caching keeps what that reply evaluated). :meth:`VllmEngine.abort`
aborts the request inside vLLM, which frees its KV cache blocks, and ends the caller's
stream at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from phoneagent.llm.engines.base import (
    FINISH_ABORT,
    FINISH_LENGTH,
    FINISH_STOP,
    BaseLlmEngine,
    Delta,
    LlmRequest,
    template_messages,
)
from phoneagent.runtime.errors import EngineFailure, InvalidArgument, PhoneAgentError, Unavailable
from phoneagent.runtime.modelfiles import MissingModelError

if TYPE_CHECKING:
    from phoneagent.llm.settings import LlmSettings

log = logging.getLogger(__name__)

_PUMP_STOP_TIMEOUT_S = 2.0


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise MissingModelError(
            "the vLLM engine needs vllm (CUDA image only)", extra="llm-gpu", package="vllm"
        ) from None
    return vllm


@dataclass
class _Live:
    queue: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    cancelled: bool = False


class VllmEngine(BaseLlmEngine):
    """In-process vLLM; ``model`` is a local directory of safetensors weights (no hub access)."""

    name = "vllm"
    structured_output = True  # json_schema constrains the output (tool calls, summaries)
    keeps_prefix = True  # automatic prefix caching: a call's next turn reuses its evaluated blocks
    continues_reply = True  # assistant_prefix follows the generation prompt (see the module doc)

    def __init__(
        self,
        *,
        model: str,
        max_model_len: int = 4096,
        gpu_memory_utilization: float = 0.85,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        **engine_kwargs: Any,
    ) -> None:
        super().__init__()
        self._vllm = _import_vllm()
        if not model:
            raise InvalidArgument("the vLLM engine needs a model directory")
        self._engine_kwargs = {
            "model": model,
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            "tensor_parallel_size": tensor_parallel_size,
            "dtype": dtype,
            "enable_prefix_caching": True,
            **engine_kwargs,
        }
        self._engine: Any = None
        self._tokenizer: Any = None
        self._live: dict[str, _Live] = {}

    @classmethod
    def options_from(cls, settings: LlmSettings) -> dict[str, Any]:
        return {
            **super().options_from(settings),
            "max_model_len": settings.context,
            "gpu_memory_utilization": settings.gpu_memory,
        }

    def _check_ready(self) -> None:
        if self._engine is None:
            raise Unavailable("the vLLM engine is not loaded")

    def load(self) -> None:
        """Start the vLLM engine (blocking: minutes on first start while kernels compile)."""
        if self._engine is not None:
            return
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        try:
            self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**self._engine_kwargs))
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineFailure("vLLM could not start the model") from exc
        log.info(
            "llm model loaded",
            extra={"engine": self.name, "max_model_len": self._engine_kwargs["max_model_len"]},
        )

    async def close(self) -> None:
        for request_id in list(self._live):
            await self.abort(request_id)
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.shutdown()

    async def _abort(self, request_id: str) -> None:
        live = self._live.get(request_id)
        if live is None:
            return
        live.cancelled = True
        live.queue.put_nowait(("wake",))
        if self._engine is not None:
            await self._engine.abort(request_id)

    async def _stream(self, request: LlmRequest) -> AsyncIterator[Delta]:
        request_id = request.request_id
        prompt = await self._prompt(request.messages, request.tools) + request.assistant_prefix
        params = self._sampling_params(request.max_tokens, request.temperature, request.json_schema)
        live = _Live()
        self._live[request_id] = live
        pump = asyncio.create_task(self._pump(prompt, params, request_id, live))
        try:
            async for delta in self._consume(live):
                yield delta
        finally:
            self._live.pop(request_id, None)
            if not pump.done():
                live.cancelled = True
                await self._engine_abort_quietly(request_id)
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                    await asyncio.wait_for(pump, _PUMP_STOP_TIMEOUT_S)

    async def _engine_abort_quietly(self, request_id: str) -> None:
        if self._engine is not None:
            with contextlib.suppress(Exception):
                await self._engine.abort(request_id)

    async def _prompt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        if self._tokenizer is None:
            tokenizer = self._engine.get_tokenizer()
            self._tokenizer = await tokenizer if inspect.isawaitable(tokenizer) else tokenizer
        try:
            prompt: str = self._tokenizer.apply_chat_template(
                template_messages(messages), tools=tools, tokenize=False, add_generation_prompt=True
            )
        except Exception as exc:  # the template raises on conversations it cannot render
            raise InvalidArgument("the chat template cannot render these messages") from exc
        return prompt

    def _sampling_params(self, max_tokens: int, temperature: float, schema: dict[str, Any] | None) -> Any:
        from vllm.sampling_params import RequestOutputKind

        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": temperature,
            "output_kind": RequestOutputKind.DELTA,
        }
        if schema is not None:
            try:
                from vllm.sampling_params import StructuredOutputsParams
            except ImportError:
                raise EngineFailure("this vLLM version has no structured outputs (needs >= 0.11)") from None
            kwargs["structured_outputs"] = StructuredOutputsParams(json=schema)
        return self._vllm.SamplingParams(**kwargs)

    async def _pump(self, prompt: str, params: Any, request_id: str, live: _Live) -> None:
        """Move vLLM's outputs onto the request's queue (runs as the stream's own task)."""
        try:
            async for output in self._engine.generate(prompt, params, request_id):
                piece = output.outputs[0]
                n_prompt = len(output.prompt_token_ids or ())
                cached = getattr(output, "num_cached_tokens", None)  # prefix-cache hit, when vLLM says
                evaluated = n_prompt - cached if isinstance(cached, int) else None
                live.queue.put_nowait(("text", piece.text, n_prompt, len(piece.token_ids), evaluated))
                if output.finished:
                    live.queue.put_nowait(("end", piece.finish_reason))
                    return
            live.queue.put_nowait(("end", "abort"))
        except asyncio.CancelledError:
            raise
        except PhoneAgentError as exc:
            live.queue.put_nowait(("error", exc))
        except Exception as exc:  # vLLM raises engine-dead and validation errors of its own types
            log.error(
                "llm generation failed",
                extra={"engine": self.name, "request_id": request_id, "error": type(exc).__name__},
            )
            live.queue.put_nowait(("error", EngineFailure("vLLM generation failed")))

    async def _consume(self, live: _Live) -> AsyncIterator[Delta]:
        prompt_tokens: int | None = None
        evaluated: int | None = None
        completion_tokens = 0
        while True:
            item = await live.queue.get()
            if live.cancelled:
                yield Delta(
                    finish_reason=FINISH_ABORT,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    prompt_evaluated_tokens=evaluated,
                )
                return
            if item[0] == "text":
                prompt_tokens, evaluated = item[2], item[4]
                completion_tokens += item[3]
                if item[1]:
                    yield Delta(
                        text=item[1], completion_tokens=completion_tokens, prompt_evaluated_tokens=evaluated
                    )
            elif item[0] == "end":
                reason = {"length": FINISH_LENGTH, "abort": FINISH_ABORT}.get(item[1], FINISH_STOP)
                yield Delta(
                    finish_reason=reason,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion_tokens,
                    prompt_evaluated_tokens=evaluated,
                )
                return
            elif item[0] == "error":
                raise item[1]
