"""The read side: event-log projections into RocksDB and the HTTP view."""
