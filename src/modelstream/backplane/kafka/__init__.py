"""The Kafka engine (``kafka://host:port[,host:port]``): the backplane over confluent-kafka.

Works against any Kafka-protocol broker (Apache Kafka, Redpanda, MSK, Confluent Cloud, and
tansu, which the test suite starts). :mod:`.engine` is the entry point.
"""
