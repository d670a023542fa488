"""Audio primitives shared by the edge, asr and tts services: G.711, resampling, PCM helpers."""
