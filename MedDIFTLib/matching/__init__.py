"""Matching: the exact similarity (:mod:`.similarity`), the search for its argmax
(:mod:`.search`) and where to search (:mod:`.priors`)."""
