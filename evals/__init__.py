"""Benchmarks and harnesses; they import anything, and nothing imports them."""
