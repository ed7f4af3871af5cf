"""Latency, FPS and memory of BaS per target and precision, timed through ``runtimes`` sessions."""
