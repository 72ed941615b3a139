"""The ``cellar`` command: a client of the REST API and of the identity API (logging in
as the OpenStack CLIs do), plus the operator's local commands (``serve``, ``admin``,
``audit verify``)."""
