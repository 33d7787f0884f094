"""kopf registrations: thin handlers that parse, call the sync path, and patch."""
