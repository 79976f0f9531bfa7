"""Orchestration and the command line over :mod:`pipeline`."""
