"""modelstream.wire."""
