"""Execution: supervisors, the local executor and the Celery executor."""
