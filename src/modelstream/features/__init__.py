"""modelstream.features."""
