"""The domain's values, free of configuration and I/O.

Wire shapes (``envelope``), error codes, internal commands, what a decision asks for
(``outputs``), deterministic ids and the memo. Nothing here imports the rest of ``vprov``.
"""
