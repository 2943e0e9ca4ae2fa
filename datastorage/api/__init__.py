"""HTTP routes of DataStorage, one module per resource; they validate, call the domain, and shape JSON."""
