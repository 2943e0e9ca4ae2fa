"""`make run`: the whole system on this machine, with a few demo SignalProcessings to watch."""
