"""The stream backplane: one port, three engines (memory, SQLite, Kafka), chosen by URL."""
