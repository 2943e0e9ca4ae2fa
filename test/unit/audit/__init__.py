"""Tests of the audit events and of their delivery to DataStorage."""
