"""Integration tests of DataStorage against real PostgreSQL and Redis servers."""
