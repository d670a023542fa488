"""What every stage's engines share: the registry they are chosen from, and their call metrics.

A stage registers each engine by name with the module and class that implement it and the
extra that installs its library; the module is imported only when its engine is chosen, so
a CPU image never imports GPU libraries. An engine class builds its own constructor options
from the stage's settings (``options_from(settings)``), so no service picks options by an
engine's name.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from phoneagent.runtime import metrics
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError
from phoneagent.runtime.modelfiles import MissingModelError

E = TypeVar("E")


@dataclass(frozen=True)
class _Entry:
    module: str
    cls: str
    extra: str
    package: str | None


class EngineRegistry(Generic[E]):
    """Engine name -> the class that implements it, for one stage (``label`` names it in errors)."""

    def __init__(self, label: str, aliases: dict[str, str] | None = None) -> None:
        self.label = label
        self._entries: dict[str, _Entry] = {}
        self._aliases = dict(aliases or {})

    def register(self, name: str, target: str, *, extra: str, package: str | None = None) -> None:
        """Add engine ``name`` implemented by ``target`` (``"module:Class"``), installed by ``extra``."""
        module, _, cls = target.partition(":")
        if not module or not cls:
            raise InvalidArgument(f"engine target {target!r} must be 'module:Class'")
        self._entries[name] = _Entry(module, cls, extra, package)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        key = self._aliases.get(name, name)
        if key not in self._entries:
            known = ", ".join(self.names())
            raise InvalidArgument(f"unknown {self.label} engine {name!r}; choose one of {known}")
        return key

    def engine_class(self, name: str) -> Any:
        """The class of engine ``name``, importing its module now.

        A library the module needs and that is not installed becomes a
        :class:`MissingModelError` naming the extra to install.
        """
        entry = self._entries[self.canonical(name)]
        try:
            module = importlib.import_module(entry.module)
        except ModuleNotFoundError as exc:
            if (exc.name or "").startswith("phoneagent"):
                raise  # our own code is broken: not a missing extra
            raise MissingModelError(
                f"the {name} engine is not installed", extra=entry.extra, package=entry.package or exc.name
            ) from exc
        return getattr(module, entry.cls)

    def create(self, name: str, **options: Any) -> E:
        """Build (but do not load) engine ``name`` with engine-specific ``options``."""
        engine: E = self.engine_class(name)(**options)
        return engine

    def options(self, name: str, settings: Any) -> dict[str, Any]:
        """The constructor options engine ``name`` builds from the stage's ``settings``."""
        options: dict[str, Any] = self.engine_class(name).options_from(settings)
        return options


class CallMeter:
    """Counts one engine's calls by outcome, and its retries (``pa_engine_*`` metrics)."""

    def __init__(self, stage: str, engine: str) -> None:
        self.stage = stage
        self.engine = engine

    def ok(self) -> None:
        metrics.ENGINE_CALLS.labels(stage=self.stage, engine=self.engine, outcome="ok").inc()

    def failed(self, error: BaseException) -> None:
        outcome = error.kind.name.lower() if isinstance(error, PhoneAgentError) else "internal"
        metrics.ENGINE_CALLS.labels(stage=self.stage, engine=self.engine, outcome=outcome).inc()

    def retried(self, retry: int, error: PhoneAgentError) -> None:
        metrics.ENGINE_RETRIES.labels(stage=self.stage, engine=self.engine).inc()
