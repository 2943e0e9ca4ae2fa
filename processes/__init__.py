"""Starting servers as child processes: ports reserved across runs, readiness that proves identity.

`ports` hands out loopback ports that no other process of any run on this
machine holds; `child` runs a server, waits until that very process is ready
and stops it. Every server the project starts goes through these two modules.
"""
