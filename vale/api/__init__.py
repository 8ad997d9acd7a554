"""The daemon's API, by subject: protocol (the wire format and error mapping), topology
(desired configuration and live switches), ports, interfaces (created by valed), fdb,
mirrors (and capture checks), service (the Api the daemon serves)."""

from vale.api.protocol import API_VERSION, ApiError, error_reply, reply_error
from vale.api.service import Api

__all__ = ["API_VERSION", "Api", "ApiError", "error_reply", "reply_error"]
