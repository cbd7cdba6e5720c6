"""The background worker that keeps models and features in memory, its JSON-lines protocol and
its client (:mod:`.protocol`, :mod:`.worker`, :mod:`.client`)."""
