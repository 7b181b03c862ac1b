"""The wire contract: Avro schemas, their pydantic mirrors, the codec and the operation catalog."""
