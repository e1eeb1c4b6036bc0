"""Test harnesses that users, examples and the test suite share (a local tansu broker)."""
