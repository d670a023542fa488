"""The operator console: call records, transcripts, recordings, per-turn latency and the audit
trail in the browser, served by the records service (:mod:`.app`)."""
