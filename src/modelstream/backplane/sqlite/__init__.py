"""The SQLite engine (``sqlite://dir``): durable topics in WAL-mode files, shared by processes.

Layout of the directory: ``meta.db`` holds the topic catalogue, consumer-group members
(with their lease) and committed offsets; ``topics/<name>-<id>.db`` holds one topic's
records, so producers of different topics never wait on each other's write lock.
"""
