"""Tunable settings, read from ``MOESIF_SEGMENT_*`` environment variables.

Secrets are not settings: keys live in Airflow connections (read in
the ``airflow`` room). Every setting has a default that suits the embedded
set-up; a bad value fails fast with the variable's name in the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

ENV_PREFIX = "MOESIF_SEGMENT_"

# Segment's documented limits (segment-api.md). The batch default keeps the
# same 25 KB margin under 500 KB that Segment's own libraries keep.
SEGMENT_MAX_MESSAGE_BYTES = 32 * 1024
SEGMENT_MAX_REQUEST_BYTES = 500 * 1000
SEGMENT_MAX_BATCH_MESSAGES = 2500


def _seconds(value: object) -> object:
    """A duration given in seconds (``600``) as a number: pydantic reads a string of digits
    as an ISO 8601 duration and refuses it."""
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d+)?\s*", value):
        return float(value)
    return value


# An ISO 8601 duration (PT10M, P31D) or a number of seconds.
Duration = Annotated[timedelta, BeforeValidator(_seconds)]


class SyncSettings(BaseSettings):
    """Everything about a run that is not a secret and not a run parameter."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    staging_root: str = Field(
        "", description="URL of the staging root (file://, s3://, gs://, memory://); "
        "empty means a folder under AIRFLOW_HOME")
    schedule: str = Field("0 * * * *", description="cron expression of the sync windows (UTC)")
    schedule_asset: str = Field(
        "", description="URI of an upstream Airflow Asset: when set, the DAG runs after each "
        "of its events instead of on the clock (each run syncs the last complete schedule "
        "interval)")
    max_window: Duration = Field(
        timedelta(days=31), gt=timedelta(0), description="longest window a run may sync "
        "without the allow_long_window param (ISO 8601 duration like P31D, or seconds)")
    lookback: Duration = Field(
        timedelta(minutes=10), ge=timedelta(0), description="how far each run also reads back "
        "into the previous window, for records Moesif indexed after that window's run "
        "(ISO 8601 duration like PT10M, or seconds; 0 = none)")
    page_size: int = Field(1000, ge=1, le=10_000, description="Moesif search page size")
    id_chunk_size: int = Field(
        500, ge=1, le=10_000, description="ids per `terms` lookup when fetching by company id")
    chunk_size: int = Field(5_000, ge=1, description="users per transform chunk")
    transform_workers: int = Field(
        0, ge=0, le=64, description="processes the transform maps users in, once the run has "
        "more than a few chunks; 0 = one per CPU core (at most 8), 1 = the task's own process")
    shard_size: int = Field(
        100_000, ge=1, description="messages per shard; each shard is one mapped load task")
    load_slots: int = Field(
        1, ge=1, le=64, description="slots of the segment_api pool: shards loading at once; "
        "each holds send_rate / load_slots")
    max_batch_bytes: int = Field(
        475_000, ge=SEGMENT_MAX_MESSAGE_BYTES + 1024, le=SEGMENT_MAX_REQUEST_BYTES,
        description="largest serialized /v1/batch body, in bytes")
    max_batch_messages: int = Field(
        SEGMENT_MAX_BATCH_MESSAGES, ge=1, le=SEGMENT_MAX_BATCH_MESSAGES,
        description="most messages in one /v1/batch request")
    send_rate: float | None = Field(
        None, gt=0, description="most events per second sent to Segment; unset = no limit")
    gzip: bool = Field(True, description="gzip /v1/batch request bodies")
    http_timeout: float = Field(60.0, gt=0, description="seconds to wait for an HTTP answer")
    max_attempts: int = Field(6, ge=1, le=50, description="tries per HTTP request")
    backoff_initial: float = Field(1.0, ge=0, description="first retry wait, seconds")
    backoff_max: float = Field(60.0, ge=0, description="longest retry wait, seconds")
    rate_limit_jitter: float = Field(
        5.0, ge=0, description="most seconds of jitter after a 429 without Retry-After")
    compress_level: int = Field(
        1, ge=0, le=9, description="gzip level of staged files: 1 to 3 are written with ISA-L "
        "(fastest), 0 (stored) and 4 to 9 (smaller, slower) with zlib")
    audit_lock_timeout: float = Field(
        30.0, gt=0, description="seconds to wait for a locked audit store before failing")
    max_refused_splits: int = Field(
        100, ge=0, description="requests a load task may spend splitting batches that Segment "
        "refuses as invalid (400, 413) to find the refused messages; 0 = never split, fail")
    removed_traits: Literal["keep", "null"] = Field(
        "keep", description="a top-level trait the user's last accepted identify had and the "
        "new one lacks: 'keep' leaves it out (Segment keeps the old value), 'null' sends it as "
        "null (Segment's profiles drop it; other destinations decide for themselves)")
    content_retention: Duration = Field(
        timedelta(days=30), ge=timedelta(0), description="how long the user state keeps each "
        "accepted identify (compressed) for the dry run's diff preview (ISO 8601 duration "
        "like P30D, or seconds; 0 = keep none; forgotten by the first run a day after it "
        "passes)")
    group_calls: bool = Field(
        False, description="also send one Segment group call per user with a company, "
        "with the company's traits (for B2B destinations: CRMs, account-based tools)")
    max_rejected_share: float = Field(
        0.05, ge=0, le=1, description="fail a run whose rejected users exceed this share")
    hash_fields: list[str] = Field(
        default_factory=list, description='JSON list of user fields to SHA-256 as they are '
        'extracted, e.g. ["email"] (top level and in metadata)')
    trait_allow: list[str] = Field(
        default_factory=list, description="JSON list: send only these top-level traits (and id)")
    trait_deny: list[str] = Field(
        default_factory=list, description="JSON list: never send these top-level traits")
    field_names: dict[str, str] = Field(
        default_factory=dict, description="JSON: inferred Moesif field -> the account's name, "
        'e.g. {"users.last_24h_agg_results": "rollup_24h"}')
    progress_seconds: float = Field(
        5.0, ge=0, description="least seconds between two progress lines of a task's log "
        "(pages, users, batches, rate, time to go)")
    doctor_budget: int = Field(
        20, ge=1, le=1000, description="most requests `doctor` sends to Moesif in one run")
    notifier: dict[str, Any] = Field(
        default_factory=dict, description='JSON: the Airflow notifier that delivers alerts, '
        'its class and arguments, e.g. {"class": "airflow.providers.smtp.notifications.smtp.'
        'SmtpNotifier", "to": "data-team@example.com"}; empty = alerts go to the log only')
    notify_on_success: bool = Field(
        False, description="also send a summary when a run succeeds (failures always alert)")
    on_failure_callback: str = Field(
        "", description="deprecated: 'module:function' called with the Airflow context when "
        "a run fails; use MOESIF_SEGMENT_NOTIFIER")
    pii_access: Literal["read", "edit"] = Field(
        "read", description="who may see raw reject records and download sent messages or "
        "rejects on the history pages: 'read' (whoever may read the DAG's runs) or 'edit' "
        "(only who may edit them)")
    history_raw_records: bool = Field(
        True, description="show rejects' raw Moesif records on the history pages")
    owner: str = Field("data-engineering", min_length=1, description="the DAG's owner in "
                       "Airflow's UI")
    task_timeout: Duration = Field(
        timedelta(hours=2), gt=timedelta(0), description="execution_timeout of the extract, "
        "transform and audit tasks (ISO 8601 duration like PT2H, or seconds)")
    run_timeout: Duration = Field(
        timedelta(hours=24), gt=timedelta(0), description="the DAG's dagrun_timeout: a run "
        "still going after it fails (ISO 8601 duration like PT24H, or seconds)")

    def load_timeout(self) -> timedelta:
        """A load task's execution_timeout: the task timeout, or, when a send rate is set,
        twice the time one full shard takes at that rate plus 30 minutes if that is longer."""
        if self.send_rate is None:
            return self.task_timeout
        share = self.send_rate / self.load_slots
        return max(self.task_timeout,
                   timedelta(seconds=2 * self.shard_size / share) + timedelta(minutes=30))

    @field_validator("notifier")
    @classmethod
    def _notifier_names_a_class(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value and not isinstance(value.get("class"), str):
            raise ValueError('needs "class": the dotted path of an Airflow notifier')
        return value

    @model_validator(mode="after")
    def _backoff_is_ordered(self) -> SyncSettings:
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must be at least backoff_initial")
        return self


def load_settings(**overrides: object) -> SyncSettings:
    """Read the settings, turning a validation error into one that names the variable."""
    try:
        return SyncSettings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "settings"
            problems.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise ConfigError("invalid setting: " + "; ".join(problems)) from None


@dataclass(frozen=True)
class Endpoint:
    """Where an API is and the secret it takes (from an Airflow connection)."""

    url: str
    secret: str = field(repr=False)
    page_size: int | None = None  # Moesif: the connection's own page size, over the setting
