"""Benchmarks for storybot; run each as a module, for example ``python -m bench.throughput``."""
