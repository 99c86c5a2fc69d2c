"""Operators' tooling behind ``vprov``: status and stage, audit, dead letters, vehicle commands,
registration files, the funnel, and the worker processes of tests and benchmarks."""
