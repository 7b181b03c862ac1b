"""The write side of taskstream: domain, stream runtime, processors, SDKs and CLI."""
