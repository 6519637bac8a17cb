"""Maintenance scripts and benchmarks (not imported by the app)."""
