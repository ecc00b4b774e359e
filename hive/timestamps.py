"""Times on the wire: unix seconds (float) in the domain, google.protobuf.Timestamp in protos."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp(seconds: float | None) -> Timestamp | None:
    """A Timestamp for unix ``seconds``; None stays None (the field is left unset)."""
    if seconds is None:
        return None
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts
