"""DataStorage: the audit service in front of PostgreSQL, with Redis as its dead-letter queue.

Wire-compatible with kubernaut's DataStorage for the audit endpoints. Layers:
`app` (composition, lifespan, error answers) -> `api/` (routes) ->
`ingest` (store or queue) -> `store`/`repository` (PostgreSQL) and `dlq`
(Redis). `schemas` is the wire format, `records` the stored form,
`timestamps` the clock-dependent rules. Start it with `python -m datastorage`
or, in-process, with `runner.DataStorageServer`.
"""
