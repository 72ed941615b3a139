"""The ``cellar`` command: a client of the REST API, plus ``cellar serve``."""
