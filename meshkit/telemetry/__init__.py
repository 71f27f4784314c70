"""Telemetry shapes shared by every backend: per-request records, queries, the service graph."""
