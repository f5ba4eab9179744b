"""Venue adapters (wire codecs, connections, discovery)."""
