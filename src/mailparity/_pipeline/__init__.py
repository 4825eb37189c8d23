"""The parts the :class:`~mailparity.processing.Processor` is assembled from, one module per
kind of job (``base`` holds what they share). Import from :mod:`mailparity.processing`."""
