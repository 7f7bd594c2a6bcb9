"""Segment: the host's region, and what a test send proves."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from ...errors import SegmentError, TransientHTTPError
from ...segment import ENVELOPE_BYTES, Batch, SegmentSender
from ...settings import Endpoint, SyncSettings
from .findings import Finding, Status
from .probe import probe_settings

# segment-api.md: since April 2025 a write key sent to the other region's host is rejected.
SEGMENT_HOSTS = {"api.segment.io": "US", "events.eu1.segmentapis.com": "EU"}
SEGMENT_URLS = {region: f"https://{host}" for host, region in SEGMENT_HOSTS.items()}


SEND_TEST_PROVES = (
    "a 200 proves the host is reachable and speaks Segment's batch API; it does not prove "
    "the write key is right, nor that it belongs to this region: Segment answers 200 to "
    "almost anything, a wrong key included")


def check_segment(endpoint: Endpoint, settings: SyncSettings, *,
                  send_test: bool) -> list[Finding]:
    """The host's region, and (only when asked) one empty batch that changes nothing."""
    findings = [segment_host_finding(endpoint.url)]
    if not send_test:
        findings.append(Finding("segment.send_test", Status.INFO,
                                "nothing sent to Segment",
                                "add --send-test to POST one empty batch (it changes nothing "
                                "in Segment)"))
    else:
        findings.append(send_test_finding(endpoint, settings))
    return findings


def segment_host_finding(url: str) -> Finding:
    """The region is configuration: a key sent to the other region's host is rejected.

    A write key does not say its region, so the doctor can only check that
    the host is one of the two documented ones and say which region it
    serves; the workspace's region is in Segment's settings.
    """
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    regions = f"US workspaces use {SEGMENT_URLS['US']}, EU workspaces {SEGMENT_URLS['EU']}"
    region = SEGMENT_HOSTS.get(host)
    data = {"region": region}
    if region is None:
        return Finding("segment.host", Status.WARN,
                       f"{url} is neither of Segment's documented hosts (fine for a local "
                       "stand-in or a proxy)",
                       f"set the host of segment_default to your workspace's region: {regions}",
                       data=data)
    if parts.scheme != "https" or parts.path.strip("/"):
        return Finding("segment.host", Status.WARN,
                       f"{url} is the {region} host but not as https with no path (the sender "
                       "appends /v1/batch)",
                       f"set the host of segment_default to {SEGMENT_URLS[region]}", data=data)
    other = "EU" if region == "US" else "US"
    return Finding("segment.host", Status.OK,
                   f"{url} is the {region} host: right only if the source's workspace is in "
                   f"the {region} region; since April 2025 a write key of an {other} workspace "
                   "is rejected here",
                   f"if the workspace is in the {other} region, set the host to "
                   f"{SEGMENT_URLS[other]}", data=data)


def send_test_finding(endpoint: Endpoint, settings: SyncSettings) -> Finding:
    """POST ``{"batch": [], "sentAt": ...}`` through the sync's own sender.

    An empty batch rather than an identify with ``context.active=false``:
    any identify creates or changes a profile, an empty batch touches none.
    """
    check = "segment.send_test"
    sender = SegmentSender(endpoint.url, endpoint.secret, probe_settings(settings))
    try:
        sender.send(Batch(0, [], ENVELOPE_BYTES))
    except SegmentError as exc:
        hint = {401: "set segment_default's password to the source's write key",
                403: "set segment_default's password to the source's write key",
                404: "check the host: Segment's batch API is at {host}/v1/batch"}
        return Finding(check, Status.FAIL, f"Segment answered {exc.status} to an empty batch: "
                       f"{exc.segment_message or '(no message)'}",
                       hint.get(exc.status, "").format(host=endpoint.url),
                       data={"status": exc.status})
    except TransientHTTPError as exc:
        return Finding(check, Status.WARN, f"{exc}: not tested",
                       "run the doctor again later", data={"status": exc.status})
    except requests.RequestException as exc:
        return Finding(check, Status.FAIL,
                       f"no answer from {sender.url} ({type(exc).__name__})",
                       "check the host of segment_default and the network")
    finally:
        sender.close()
    return Finding(check, Status.OK, f"POST {sender.url} with an empty batch answered 200: "
                   f"{SEND_TEST_PROVES}; after the first real run, the source's Debugger in "
                   "Segment shows whether the identifies arrived", data={"status": 200})
