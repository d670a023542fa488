"""Redaction benchmark: recall and precision per kind of personal data on a labelled set of
phone-style utterances (``redact_set.txt`` beside this module), and the latency per utterance.

    python -m phoneagent.devtools.redact_bench [--misses] [--set FILE]

How it counts (what redaction must achieve, not what a tagger names):

* recall of a kind: the share of its labelled spans whose every letter and digit lies inside
  something :func:`~phoneagent.runtime.redact.find_personal_data` masks (whatever it calls it);
* precision of a kind: the share of the spans masked as that kind that are mostly (over half of
  their letters and digits) labelled personal data; a masked time, price or ordinary word counts
  against it;
* kept: the share of ``{KEEP:...}`` spans (times, prices, counts, appointment dates the caller
  needs) that no mask touches.

Latency is the wall time of what one :func:`redact_transcript` call does (analysis and
masking), after the model is loaded, on one thread. ``redact_heldout.txt`` is a second set,
written after the recognisers were tuned on the first (``--set`` selects it).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from phoneagent.runtime import redact

DEFAULT_SET = Path(__file__).with_name("redact_set.txt")
KINDS = ("CARD", "SSN", "PHONE", "DOB", "EMAIL", "NAME", "LOCATION", "CODE", "NUMBER")
# What the redactor calls each kind (find_personal_data's Finding.kind) -> the label's name.
LABEL_OF = {
    "CREDIT_CARD": "CARD",
    "US_SSN": "SSN",
    "PHONE_NUMBER": "PHONE",
    "DATE_OF_BIRTH": "DOB",
    "EMAIL_ADDRESS": "EMAIL",
    "PERSON": "NAME",
    "LOCATION": "LOCATION",
    "CODE": "CODE",
    "NUMBER": "NUMBER",
    "SIP_USER": "NUMBER",
}
_SPAN = re.compile(r"\{([A-Z]+):([^{}]+)\}")


@dataclass
class Example:
    line: int
    context: str
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)  # (start, end, kind or KEEP)


def parse_line(raw: str, line: int) -> Example:
    """One labelled line: ``[agent sentence ||] utterance`` with ``{KIND:text}`` spans."""
    context, _, said = raw.rpartition("||")
    said = said.strip()
    text, spans, pos = "", [], 0
    for m in _SPAN.finditer(said):
        kind = m.group(1)
        if kind not in KINDS and kind != "KEEP":
            raise ValueError(f"line {line}: unknown kind {kind!r}")
        text += said[pos : m.start()]
        spans.append((len(text), len(text) + len(m.group(2)), kind))
        text += m.group(2)
        pos = m.end()
    text += said[pos:]
    if "{" in text or "}" in text:
        raise ValueError(f"line {line}: unbalanced braces")
    return Example(line, context.strip(), text, spans)


def load(path: Path) -> list[Example]:
    out = []
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if raw.strip() and not raw.lstrip().startswith("#"):
            out.append(parse_line(raw, n))
    return out


def _alnum(text: str, start: int, end: int) -> set[int]:
    return {i for i in range(start, end) if text[i].isalnum()}


@dataclass
class Score:
    spans: Counter[str] = field(default_factory=Counter)
    caught: Counter[str] = field(default_factory=Counter)
    masked: Counter[str] = field(default_factory=Counter)
    right: Counter[str] = field(default_factory=Counter)
    keep: int = 0
    kept: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)


def score(examples: list[Example]) -> Score:
    s = Score()
    for ex in examples:
        t0 = time.perf_counter()  # what redact_transcript does, with the findings kept
        found = redact.find_personal_data(ex.text, context=ex.context)
        redact.apply_findings(ex.text, found)
        s.latencies_ms.append((time.perf_counter() - t0) * 1000)
        covered: set[int] = set()
        for f in found:
            covered |= set(range(f.start, f.end))
        labelled = set().union(*(_alnum(ex.text, a, b) for a, b, k in ex.spans if k != "KEEP"))
        for a, b, kind in ex.spans:
            chars = _alnum(ex.text, a, b)
            if kind == "KEEP":
                s.keep += 1
                if not chars & covered:
                    s.kept += 1
                else:
                    s.misses.append(f"{ex.line}: masked a kept value {ex.text[a:b]!r}")
                continue
            s.spans[kind] += 1
            if chars <= covered:
                s.caught[kind] += 1
            else:
                s.misses.append(f"{ex.line}: {kind} not masked: {ex.text[a:b]!r}")
        for f in found:
            label = LABEL_OF.get(f.kind, f.kind)
            s.masked[label] += 1
            chars = _alnum(ex.text, f.start, f.end)
            if chars and len(chars & labelled) * 2 > len(chars):
                s.right[label] += 1
            else:
                s.misses.append(f"{ex.line}: masked as {label} wrongly: {ex.text[f.start : f.end]!r}")
    return s


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:6.1f} %" if b else "     - "


def report(s: Score, n: int) -> str:
    lines = [f"{'kind':<9} {'spans':>5} {'recall':>8}   {'masked':>6} {'precision':>9}"]
    for kind in KINDS:
        lines.append(
            f"{kind:<9} {s.spans[kind]:>5} {_pct(s.caught[kind], s.spans[kind])}   "
            f"{s.masked[kind]:>6} {_pct(s.right[kind], s.masked[kind]):>9}"
        )
    total, caught = sum(s.spans.values()), sum(s.caught.values())
    masked, right = sum(s.masked.values()), sum(s.right.values())
    lines.append(f"{'all':<9} {total:>5} {_pct(caught, total)}   {masked:>6} {_pct(right, masked):>9}")
    lines.append(f"kept (times, prices, counts, appointment dates): {s.kept}/{s.keep} {_pct(s.kept, s.keep)}")
    lat = sorted(s.latencies_ms)
    p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))]
    lines.append(
        f"latency per utterance: mean {statistics.fmean(lat):.1f} ms, p50 {statistics.median(lat):.1f} ms, "
        f"p95 {p95:.1f} ms, max {lat[-1]:.1f} ms ({n} utterances, one thread, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=DEFAULT_SET, help="labelled utterances")
    parser.add_argument("--misses", action="store_true", help="list every miss and wrong mask")
    args = parser.parse_args(argv)
    examples = load(args.set)
    t0 = time.perf_counter()
    redact.warm()
    print(f"analyzer loaded in {time.perf_counter() - t0:.1f} s; {len(examples)} utterances")
    s = score(examples)
    print(report(s, len(examples)))
    if args.misses:
        print("\n".join(s.misses) or "no misses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
