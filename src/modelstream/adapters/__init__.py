"""Integrations with other people's pipelines: model serving as one step of a Spark job or
a Python stream library, built on :class:`modelstream.scoring.embedded.EmbeddedScorer`.

Each module imports its framework lazily and is installed with an optional extra
(``modelstream[spark]``, ``modelstream[bytewax]``).
"""
