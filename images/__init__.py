"""Cellar's container images: one folder per image and ``build.py``, run as a script."""
