"""The partitioned stream runtime: runs any decider over a command topic with an event log."""
