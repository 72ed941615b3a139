"""Cellar's REST API in OpenStack Trove's v1.0 wire format."""
