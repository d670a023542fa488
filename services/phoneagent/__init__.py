"""Self-hostable AI phone agent: services on a NATS bus."""

__version__ = "0.1.0"
