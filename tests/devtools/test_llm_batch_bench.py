"""The batching measurement runs on the engine's own model file and prints one line per case."""

from __future__ import annotations

import re

import pytest
from phoneagent.devtools import llm_batch_bench


def test_it_measures_every_batch_size_on_the_real_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert llm_batch_bench.main(["--prefix", "64", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    steps = re.findall(r"decode step, (\d) sequence\(s\): +([\d.]+) ms", out)
    assert [n for n, _ in steps] == ["1", "2", "4", "8"] and all(float(ms) > 0 for _, ms in steps)
    assert re.search(r"32 prompt tokens: +[\d.]+ ms alone, +[\d.]+ ms with 3 sequences", out)


def test_settings_that_do_not_fit_the_context_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert llm_batch_bench.main(["--prefix", "8000"]) == 2
    assert llm_batch_bench.main(["--threads", "0"]) == 2
    assert "fit 8192 tokens" in capsys.readouterr().err
