"""The one HTTP process: the read view over the projections, the command gateway, the live
dashboard, and the service that runs them beside the projector."""
