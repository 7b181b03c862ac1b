"""Handlers shipped with taskstream: a simulated GHL CRM and a real HTTP ``api_call``."""

from streams.executor.handlers.api_call import ApiCallHandler, validate_api_call_config
from streams.executor.handlers.ghl import SimulatedGhlHandler, ghl_handlers

__all__ = ["ApiCallHandler", "SimulatedGhlHandler", "ghl_handlers", "validate_api_call_config"]
