"""Published message shapes as fixtures (index.json) and their loader (corpus.py)."""
