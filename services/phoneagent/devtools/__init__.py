"""Developer tools: benchmarks, evaluations and the test harness, apart from the services."""
