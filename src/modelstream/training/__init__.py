"""modelstream.training."""
