"""Data sources and the normalized on-disk store (imports nothing heavy)."""
