"""The parts :class:`~mailparity.testing.FakeGraph` is assembled from, one module per section
(``model`` holds its records and helpers). Import from :mod:`mailparity.testing.fake_graph`."""
