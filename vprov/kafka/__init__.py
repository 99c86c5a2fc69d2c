"""What talks to Kafka outside the Faust workers' own consumers.

The topic catalogue, client settings and clients, topic administration, ACLs, MirrorMaker 2
configuration, Avro serialization, partitioning and topic reading.
"""
