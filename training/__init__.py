"""Self-supervised and image–text training: methods from parts, a trainer, and evaluation."""
