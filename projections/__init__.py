"""The read side: the read model folded from the event log -- the fold, its tables and indexes,
the queries, the store interface and a dict store. The projector that consumes ``task.events``
into its RocksDB store, and the HTTP process that serves the answers, are ``api``."""
