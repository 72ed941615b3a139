"""Cellar's task manager: Celery workers that run workflows as resumable steps."""
