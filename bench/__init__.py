"""Benchmarks of the campaign send path (see README, "Performance")."""
