"""Networks, training objectives and the training loop (imports nothing heavy)."""
