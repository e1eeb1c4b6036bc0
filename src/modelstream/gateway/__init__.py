"""modelstream.gateway."""
