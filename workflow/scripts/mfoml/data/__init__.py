"""Data sets, folds, label noise and data-set variants (no heavy imports here)."""
