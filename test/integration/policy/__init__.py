"""Policies against the real engines: an OPA server per worker and regorus in-process."""
