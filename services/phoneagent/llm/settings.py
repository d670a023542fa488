"""LLM service settings (environment variables, validated at start)."""

from __future__ import annotations

import dataclasses

from phoneagent.llm.engines.base import engine_names
from phoneagent.llm.streaming import FIRST_MAX_WORDS, FIRST_PHRASE_MIN_WORDS
from phoneagent.runtime.settings import env, non_negative, positive


def _first_max_words(value: int) -> str | None:
    ok = value == 0 or value >= FIRST_PHRASE_MIN_WORDS
    return None if ok else f"must be 0 (off) or at least {FIRST_PHRASE_MIN_WORDS}"


PROMPT_DOCUMENTS_CHARS = 6000  # about 1,500 tokens: evaluated once, at warm-up


@dataclasses.dataclass(frozen=True)
class LlmSettings:
    engine: str = env("PA_LLM_ENGINE", "llama_cpp", doc="llama_cpp (CPU), vllm (GPU) or openai_http")
    model: str = env(
        "PA_LLM_MODEL", "qwen-0.5b", doc="qwen-0.5b or qwen-1.5b (llama_cpp); a model dir (vllm)"
    )
    threads: int = env(
        "PA_LLM_THREADS",
        2,
        check=positive,
        doc="llama.cpp decoding threads (2 measured faster than 1 over SIP, ASR and TTS on the same 2 cores)",
    )
    batch_threads: int = env(
        "PA_LLM_BATCH_THREADS",
        2,
        check=positive,
        doc="llama.cpp prompt-processing threads (scales with cores)",
    )
    context: int = env("PA_LLM_CONTEXT", 8192, check=positive, doc="Context window in tokens")
    state_cache_mb: int = env(
        "PA_LLM_STATE_CACHE_MB",
        512,
        doc="llama.cpp: memory for the conversations' evaluated tokens kept between their turns "
        "(about 12 KB per token for qwen-0.5b, 28 KB for qwen-1.5b; each kept state holds the "
        "shared prompt too, ~30 MB for qwen-0.5b, so 512 MB keeps ~16 and four calls' 2-3 each "
        "fit); 0 keeps none",
    )
    gpu_memory: float = env(
        "PA_LLM_GPU_MEMORY",
        0.85,
        doc="vllm: share of the GPU's memory for weights and KV cache (leave room for ASR and TTS "
        "on a shared card, e.g. 0.5)",
    )
    base_url: str = env("PA_LLM_BASE_URL", "", doc="OpenAI-compatible server URL (openai_http)")
    api_key: str = env("PA_LLM_API_KEY", "", doc="Bearer key for the OpenAI-compatible server")
    max_tokens: int = env("PA_LLM_MAX_TOKENS", 120, check=positive, doc="Reply length limit")
    temperature: float = env("PA_LLM_TEMPERATURE", 0.3, doc="Sampling temperature")
    filler_after_s: float = env(
        "PA_LLM_FILLER_AFTER_S", 0.8, check=positive, doc="Say a filler when a tool runs longer than this"
    )
    first_max_words: int = env(
        "PA_LLM_FIRST_MAX_WORDS",
        FIRST_MAX_WORDS,
        check=_first_max_words,
        doc="A reply's first sentence with no comma in its first words goes to TTS at a phrase "
        "boundary (before 'at', 'with', 'because'... once 4 words are in), else after this many "
        "words, so the caller hears it sooner; 0: only at a comma or the sentence end",
    )
    prefill_partials: bool = env(
        "PA_LLM_PREFILL_PARTIALS",
        True,
        doc="While the caller speaks, evaluate their words so far from each partial transcript "
        "(background work, when the engine is quiet), so the final evaluates only what follows",
    )
    tool_timeout_s: float = env(
        "PA_LLM_TOOL_TIMEOUT_S",
        4.0,
        check=positive,
        doc="Longest a tool (the appointment book) may take before the caller hears an apology; "
        "each database statement gets a little under half of it",
    )
    database_url: str = env(
        "PA_DATABASE_URL",
        "sqlite:///var/phone-agent.sqlite3",
        doc="Appointments database: sqlite:///path or postgresql://...",
    )
    knowledge: bool = env("PA_LLM_KNOWLEDGE", True, doc="Answer from the agent's knowledge documents")
    prompt_documents_chars: int = env(
        "PA_LLM_PROMPT_DOCUMENTS_CHARS",
        PROMPT_DOCUMENTS_CHARS,
        check=non_negative,
        doc="Documents up to this many characters are all in the system prompt (evaluated once); "
        "longer ones are searched and the best passages ride with the caller's words; 0: always search",
    )
    appointment_retention_days: float = env(
        "PA_APPOINTMENT_RETENTION_DAYS",
        365.0,
        check=non_negative,
        doc="Appointments are deleted this many days after they ended; 0 keeps them forever",
    )
    message_retention_days: float = env(
        "PA_MESSAGE_RETENTION_DAYS",
        90.0,
        check=non_negative,
        doc="Messages taken for the staff are deleted after this many days; 0 keeps them forever",
    )
    retention_every_s: float = env(
        "PA_RETENTION_PURGE_EVERY_S", 3600.0, check=positive, doc="How often expired appointments are purged"
    )

    def validate(self) -> list[str]:
        problems = []
        if self.engine not in engine_names():
            known = engine_names()
            problems.append(f"PA_LLM_ENGINE={self.engine!r}: must be {', '.join(known[:-1])} or {known[-1]}")
        if self.engine == "openai_http" and not self.base_url:
            problems.append("PA_LLM_BASE_URL: required when PA_LLM_ENGINE=openai_http")
        if not 0.05 <= self.gpu_memory <= 0.95:
            problems.append("PA_LLM_GPU_MEMORY: must be between 0.05 and 0.95")
        if not 0.0 <= self.temperature <= 2.0:
            problems.append("PA_LLM_TEMPERATURE: must be between 0 and 2")
        return problems
