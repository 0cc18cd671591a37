"""Networks, training and self-supervised objectives (imports nothing heavy)."""
