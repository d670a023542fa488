"""Each scenario's caller has its own voice, level and pauses, drawn from a seed: the same for
every run of a scenario, different across scenarios (issue 16: the e2e tests passed on one
voice and one timing only)."""

from __future__ import annotations

import itertools

import pytest
from phoneagent.devtools.harness.impair import active_rms, dbfs_to_rms
from phoneagent.devtools.harness.scenario import builtin_names
from phoneagent.devtools.harness.voice import DELAY_S, CallerStyle, CallerVoice, caller_style


def test_a_scenario_always_gets_the_same_caller() -> None:
    assert caller_style("hours") == caller_style("hours")
    first = list(itertools.islice(caller_style("hours").delays(), 5))
    assert first == list(itertools.islice(caller_style("hours").delays(), 5))
    assert caller_style("hours", seed=1) != caller_style("hours")


def test_callers_differ_across_scenarios_and_pause_as_configured() -> None:
    styles = [caller_style(name, seed) for name in builtin_names() for seed in range(4)]
    assert len({(s.engine, s.voice) for s in styles}) >= 4
    assert len({s.level_dbfs for s in styles}) >= 3
    delays = [d for s in styles for d in itertools.islice(s.delays(), 3)]
    assert all(DELAY_S[0] <= d <= DELAY_S[1] for d in delays)
    assert max(delays) - min(delays) > 1.0


@pytest.mark.slow
def test_the_voice_speaks_at_its_level() -> None:
    voice = CallerVoice.for_style(CallerStyle("piper", "", -30.0))
    try:
        pcm = voice.synthesize("What should new patients bring?")
    finally:
        voice.close()
    # Within 1 dB: which frames count as active (over -50 dBFS) changes with the level.
    assert active_rms(pcm) == pytest.approx(dbfs_to_rms(-30.0), rel=0.12)
    assert active_rms(pcm) < dbfs_to_rms(-25.0)
