"""Edge media: RTP, RFC 4733 DTMF, jitter buffer, playout pacing and barge-in detection (no bus code)."""
