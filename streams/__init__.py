"""Faust applications and agents: the shell around the decision functions of ``vprov.flows``.

``app`` builds a worker's Faust application, ``agents`` declares its agents from the topology
(``vprov.flows.topology``), ``shell`` moves a decision into the world (identity registry, table,
topics), ``repairs`` holds the repairs of Faust's and aiokafka's behaviour.
"""
