"""modelstream.monitoring."""
