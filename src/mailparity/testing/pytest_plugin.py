"""pytest plugin of mailparity (registered through the ``pytest11`` entry point).

Fixtures are added as the testing kit grows; importing this module must stay cheap and must never
fail, because pytest loads it in every project that has mailparity installed.
"""
