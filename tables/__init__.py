"""The shapes of the workers' table entries (``models``): plain JSON-serialisable dicts, so the
changelog topics stay readable by any consumer. Nothing here imports the rest of the project.
"""
