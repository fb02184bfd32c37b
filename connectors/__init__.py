"""Kafka and file sources/sinks, serialisation, the image store, and the dev Kafka broker."""
