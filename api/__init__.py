"""The one HTTP process: the projector (``task.events`` into the RocksDB projection store), the
read view over it, the command gateway, the live dashboard, and the service that runs them."""
