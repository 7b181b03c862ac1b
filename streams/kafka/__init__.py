"""Everything that talks to a Kafka broker as a broker: client settings, the broker managers
(the embedded Tansu broker and a local Apache Kafka), what a broker can do (its profile), and
the workarounds a broker that is not Kafka needs, kept here and active only where needed."""

from streams.kafka.clients import client_kwargs, consumer_kwargs, producer_kwargs, topic_partitions

__all__ = ["client_kwargs", "consumer_kwargs", "producer_kwargs", "topic_partitions"]
