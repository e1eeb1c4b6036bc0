"""The demo: a guided run of modelstream end to end on one machine."""
