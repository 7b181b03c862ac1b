"""The read side: event-log projections into RocksDB tables (the read model only; the HTTP
process that serves them is ``api``)."""
