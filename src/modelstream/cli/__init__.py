"""modelstream.cli."""
