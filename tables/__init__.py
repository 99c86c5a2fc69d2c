"""State models and table definitions of the workers.

``models`` holds the shape of every table entry (plain JSON-serialisable dicts, so the changelog
topics stay readable by any consumer); ``definitions`` declares the Faust tables per role.
"""
