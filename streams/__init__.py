"""Faust applications and agents: the shell around the decision functions of ``vprov.flows``.

``app`` builds a worker's Faust application, ``shell`` moves a decision into the world (table,
identity registry, topics), ``global_worker`` and ``regional_worker`` declare the agents.
"""
