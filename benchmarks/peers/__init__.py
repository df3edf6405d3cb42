"""Peer pipelines from other libraries, built to match Kinema's default model for benchmarks."""
