"""modelstream.rendezvous."""
