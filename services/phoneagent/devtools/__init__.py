"""Developer tooling that sits apart from the stages: per-stage benchmarks, the booking-phrasing
eval, the simulated-caller harness behind ``phone-agent call|demo|bench``, and the proto staleness
check. Devtools may import any stage; no stage imports devtools."""
