"""Airflow hooks for the two APIs, and the connection types ``moesif`` and ``segment``.

Registered the way providers register theirs (``provider.get_provider_info`` through the
``apache_airflow_provider`` entry point), so Admin > Connections offers "Moesif" and
"Segment" with our labels and fields, and its Test button calls ``test_connection``: the
doctor's answer for that one connection, in one line, without sending an event.

The tasks get their endpoints from these hooks. Connections of the older ``http`` (or
``https``) type keep working, read the same way; any other type fails fast, naming the
connection.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

from ..errors import ConfigError
from ..settings import Endpoint, load_settings

log = logging.getLogger(__name__)

LEGACY_CONN_TYPES = ("http", "https")
MOESIF_HOST = "https://api.moesif.com"
# segment-api.md: the region is configuration; a key sent to the other region's host is refused.
SEGMENT_REGIONS = {"US": "https://api.segment.io", "EU": "https://events.eu1.segmentapis.com"}


def find_connection(conn_id: str) -> Any | None:
    """A connection from wherever Airflow keeps it, or ``None``.

    Inside a task (and in the api-server, the scheduler and the DAG processor) Airflow's own
    lookup sees every source. A bare process on an Airflow machine (the CLI) only sees
    ``AIRFLOW_CONN_*`` variables and secrets backends that way, so the metadata database is
    asked too, through Airflow's own metastore backend.
    """
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        pass
    if _in_task():
        return None
    try:
        from airflow.secrets.metastore import MetastoreBackend
    except ImportError:  # a worker with only the task SDK
        return None
    try:
        return MetastoreBackend().get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - no metadata database here (a bare CLI)
        log.debug("metadata database not consulted for %s: %s", conn_id, exc)
        return None


def _in_task() -> bool:
    try:
        from airflow.sdk.execution_time import task_runner
    except ImportError:
        return False
    return getattr(task_runner, "SUPERVISOR_COMMS", None) is not None


def _extra(conn: Any, conn_type: str, name: str) -> Any:
    """A field of the connection's extra, as the form stores it (plain, or with Airflow's
    older ``extra__<type>__`` prefix)."""
    extra = conn.extra_dejson or {}
    for key in (name, f"extra__{conn_type}__{name}"):
        if extra.get(key) not in (None, ""):
            return extra[key]
    return None


def _url(host: str, schema: str | None, port: int | None) -> str:
    host = host.strip()
    if "://" not in host:
        host = f"{schema if schema in ('http', 'https') else 'https'}://{host}"
    if port and host.count(":") < 2:
        host = f"{host}:{port}"
    return host.rstrip("/")


class _ApiHook(BaseHook):
    """What both hooks share: finding the connection and checking its type."""

    api: ClassVar[str]
    example: ClassVar[str]

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name

    def connection(self) -> Any:
        conn = find_connection(self.conn_id)
        if conn is None:
            raise ConfigError(
                f"Airflow connection {self.conn_id!r} is not set: add it under Admin > "
                f"Connections (type {self.hook_name}), or export "
                f"AIRFLOW_CONN_{self.conn_id.upper()}='{self.example}'")
        kind = (conn.conn_type or "").lower()
        if kind and kind not in (self.conn_type, *LEGACY_CONN_TYPES):
            raise ConfigError(
                f"Airflow connection {self.conn_id!r} is of type {conn.conn_type!r}: it must be "
                f"a {self.hook_name} connection (type {self.conn_type!r}; the older 'http' "
                "works too)")
        return conn

    def get_conn(self) -> Endpoint:
        return self.endpoint()

    def endpoint(self) -> Endpoint:
        raise NotImplementedError

    def test_connection(self) -> tuple[bool, str]:
        """The Test button's answer: the doctor's checks of this connection, in one line."""
        from ..ops.doctor import Status

        try:
            findings = self.checks()
        except ConfigError as exc:
            return False, str(exc)
        failed = [f for f in findings if f.status is Status.FAIL]
        shown = failed or [f for f in findings if f.status is not Status.INFO] or findings
        text = "; ".join(f.message for f in shown)
        fixes = list(dict.fromkeys(f.fix for f in failed if f.fix))  # each fix once
        if fixes:
            text += ". Fix: " + "; ".join(fixes)
        return not failed, f"{self.hook_name}: {text}"

    def checks(self) -> list:
        raise NotImplementedError


class MoesifHook(_ApiHook):
    """The Moesif Management API: host (default ``https://api.moesif.com``), the key as the
    password (scopes ``read:users`` and ``read:companies``), an optional page size."""

    conn_name_attr = "moesif_conn_id"
    default_conn_name = "moesif_default"
    conn_type = "moesif"
    hook_name = "Moesif"
    api = "moesif"
    example = ('{"conn_type": "moesif", "host": "https://api.moesif.com", '
               '"password": "<Management API key>"}')

    def __init__(self, moesif_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(moesif_conn_id, **kwargs)

    def endpoint(self) -> Endpoint:
        conn = self.connection()
        if not conn.password:
            raise ConfigError(f"Airflow connection {self.conn_id!r} has no password: set it to "
                              "the Moesif Management API key (scopes read:users and "
                              "read:companies)")
        mask_secret(conn.password)
        host = _url(conn.host, conn.schema, conn.port) if (conn.host or "").strip() \
            else MOESIF_HOST
        page_size = _extra(conn, self.conn_type, "page_size")
        try:
            page_size = int(page_size) if page_size is not None else None
        except (TypeError, ValueError):
            page_size = -1
        if page_size is not None and not 1 <= page_size <= 10_000:
            raise ConfigError(f"Airflow connection {self.conn_id!r}: page_size must be a whole "
                              "number from 1 to 10000")
        return Endpoint(host, conn.password, page_size=page_size)

    def checks(self) -> list:
        """The host, and one one-record search per entity: the key and its scopes."""
        from ..moesif import MoesifClient
        from ..ops.doctor import ENTITIES, moesif_host_finding
        from ..ops.doctor.moesif_checks import access_findings
        from ..ops.doctor.probe import MoesifProbe, probe_settings

        endpoint = self.endpoint()
        settings = probe_settings(load_settings())
        with MoesifClient(endpoint.url, endpoint.secret, settings) as client:
            probe = MoesifProbe(client, budget=len(ENTITIES))
            samples = {entity: probe.search(entity, 1) for entity in ENTITIES}
        return [moesif_host_finding(endpoint.url), *access_findings(samples)]


class SegmentHook(_ApiHook):
    """A Segment source: its region (or an explicit host) and its write key (the password, or
    the extra ``write_key`` as the Segment provider keeps it)."""

    conn_name_attr = "segment_conn_id"
    default_conn_name = "segment_default"
    conn_type = "segment"
    hook_name = "Segment"
    api = "segment"
    example = ('{"conn_type": "segment", "password": "<source write key>", '
               '"extra": {"region": "US"}}')

    def __init__(self, segment_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(segment_conn_id, **kwargs)

    def endpoint(self) -> Endpoint:
        conn = self.connection()
        key = conn.password or _extra(conn, self.conn_type, "write_key")
        if not key:
            raise ConfigError(f"Airflow connection {self.conn_id!r} has no write key: set its "
                              "password (or extra write_key) to the Segment source's write key")
        mask_secret(key)
        if (conn.host or "").strip():
            return Endpoint(_url(conn.host, conn.schema, conn.port), key)
        region = str(_extra(conn, self.conn_type, "region") or "US").upper()
        if region not in SEGMENT_REGIONS:
            raise ConfigError(f"Airflow connection {self.conn_id!r}: region must be US or EU, "
                              f"got {region!r}")
        return Endpoint(SEGMENT_REGIONS[region], key)

    def checks(self) -> list:
        """The host's region, and one empty batch: it proves the host speaks Segment's batch
        API, not that the key is right. No event is sent."""
        from ..ops.doctor import segment_host_finding, send_test_finding

        endpoint = self.endpoint()
        return [segment_host_finding(endpoint.url),
                send_test_finding(endpoint, load_settings())]
