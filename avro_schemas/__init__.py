"""The Avro schemas of the records vprov exchanges over Kafka, shipped as package data.

Read them with ``importlib.resources.files("avro_schemas")``; ``vprov.kafka.avro`` loads them.
"""
