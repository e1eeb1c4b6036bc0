"""A feature set importable by path, for the spec and CLI tests."""

from tests.features.helpers import truck_features

TRUCKS = truck_features(ooo=20)
NOT_A_SET = 3
