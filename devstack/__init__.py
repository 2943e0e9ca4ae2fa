"""The whole local system in one supervised process: control plane, PostgreSQL, Redis, DataStorage.

`make run` and the integration suite both need the same servers. A stack
supervisor starts them, writes their addresses into one JSON state file, and
stops them when told (SIGTERM), when the process it watches dies, or on
Ctrl-C. `SharedStack` lets many pytest-xdist workers share one supervisor:
the first starts it under a file lock, the last one out stops it.
"""
