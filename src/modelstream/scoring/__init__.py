"""modelstream.scoring."""
