"""A phone-realistic simulated caller, scripted scenarios and the end-to-end latency benchmark."""
