"""The destination: Segment's HTTP Tracking API. Messages packed into batches
(``batching``), sent one batch at a time at a held rate (``sender``)."""

from .batching import ENVELOPE_BYTES, Batch, pack
from .sender import BATCH_PATH, RateLimiter, SegmentSender

__all__ = ["BATCH_PATH", "ENVELOPE_BYTES", "Batch", "RateLimiter", "SegmentSender", "pack"]
