"""The device edge (docs/architecture.md, "The device edge"): devices speak MQTT to IoT
brokers; the identity seam's Mosquitto implementation (``dynsec``), the bridge between a broker
and Kafka (``bridge``), and simulated devices (``devices``)."""
