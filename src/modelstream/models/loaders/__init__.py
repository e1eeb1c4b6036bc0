"""One module per model format, each implementing :class:`modelstream.models.loader.ModelLoader`."""
