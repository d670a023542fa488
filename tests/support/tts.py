"""The real TTS service on a real nats-server, started and stopped the way the TTS bus tests share."""

from __future__ import annotations

from pathlib import Path

from phoneagent.runtime import streams
from phoneagent.runtime.sessions import SessionHost
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.tts.service import TtsService
from phoneagent.tts.settings import TtsSettings


async def start_service(nats_url: str, directory: Path, replica: str, engine: str) -> TtsService:
    common = load(CommonSettings, nats_url=nats_url, replica_id=replica)
    settings = load(TtsSettings, engines=[engine], engine=engine, prompt_dir=str(directory))
    svc = TtsService(common, settings)
    await svc.bus.connect(nats_url)
    await streams.ensure(svc.bus.jetstream())
    await svc.setup()
    await svc.serve_requests()
    svc.sessions = SessionHost(svc.bus, "tts", svc.replica, svc.new_session)
    await svc.sessions.start()
    return svc


async def stop_service(svc: TtsService) -> None:
    assert svc.sessions is not None
    await svc.sessions.close()
    await svc.bus.close()
    await svc.tasks.close(timeout=5.0)
    await svc.teardown()
