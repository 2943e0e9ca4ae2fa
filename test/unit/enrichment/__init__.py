"""Tests of the enrichment stage: context transforms, reads, owner chain, detection, caches, recovery."""
