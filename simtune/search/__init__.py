"""Defining a search: search-space files (``space``), algorithm and scheduler names and their
rules (``algorithms``), and replicates with the seed rule (``replicates``). No Ray import."""
