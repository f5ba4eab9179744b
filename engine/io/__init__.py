"""Durable I/O: crash-safe JSON Lines appender and per-day record files."""
