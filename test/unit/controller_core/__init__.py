"""Tests of the controller's core without a cluster: configuration, status, audit trail, backoff, facts."""
