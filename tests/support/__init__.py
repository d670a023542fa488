"""Helpers the tests share (importable as ``support.<module>``: tests/ is on the path): the nats
and replica plumbing, the running edge and policy stacks, the call probe, SIP/pjsua2 and browser
peers, the chart renderer, PostgreSQL. A helper used by two test files lives here, never copied."""
