"""Baseline methods, one module each; every module is imported by :func:`ssnet.registry.discover`."""
