"""modelstream.models."""
