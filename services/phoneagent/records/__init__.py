"""Call records: one durable row per call, folded from the PA_CALLS and PA_AUDIT streams."""
