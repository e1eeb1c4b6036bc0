"""The archive (the decoy): every request, score, result and label of a service as Parquet.

See :mod:`modelstream.archive.layout` for the files and their columns,
:mod:`modelstream.archive.archiver` for the role that writes them,
:mod:`modelstream.archive.reader` for reading them back, and
:mod:`modelstream.archive.replay` for re-sending archived requests.
"""
