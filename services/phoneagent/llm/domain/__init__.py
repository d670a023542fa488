"""Dialog domain of the LLM service: the agent file, date resolution in code, the
appointment book, the tools the model may call, and retrieval over the agent's documents."""
