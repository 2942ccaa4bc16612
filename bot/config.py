"""Settings: the only reader of the environment."""

from __future__ import annotations

import hashlib
import hmac
import ssl
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.errors import ConfigError
from bot.proxy import Proxies

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Everything the bot needs to run, validated once at start-up."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    slack_bot_token: SecretStr
    slack_app_token: SecretStr | None = None
    """An app-level token (`xapp-`, scope connections:write) switches Slack's side to Socket Mode."""
    slack_signing_secret: SecretStr | None = Field(default=None, validate_default=True)
    """Required in HTTP mode, where it checks every request; Socket Mode needs none."""
    slack_api_url: AnyHttpUrl = AnyHttpUrl("https://slack.com/api/")

    bk_api_url: AnyHttpUrl
    # v2: ESB `<root>/api/c/compapi/v2/job/...`; v3: the API gateway, `bk_api_url` being its stage root
    # (`https://bkapi.example.com/api/bk-job/prod`).
    bk_api_version: Literal["v2", "v3"] = "v2"
    # v3 only: `system` calls the gateway's app-state resources (`/api/v3/system/<api>`, the user in
    # `X-Bk-Username`), which a current gateway accepts from any app granted them; `user` calls `/api/v3/<api>`
    # with `bk_username` in the auth header, which only an old gateway's skip-user-auth list lets through.
    bk_api_v3_path: Literal["system", "user"] = "system"
    bk_app_code: str = Field(min_length=1, max_length=32)
    bk_app_secret: SecretStr
    bk_username: str | None = None
    bk_biz_id: int | None = Field(default=None, ge=1)
    bk_job_web_url: AnyHttpUrl | None = None
    bk_timeout: float = Field(default=10.0, gt=0, le=120)
    bk_plan_cache_ttl: float = Field(default=60.0, ge=0)
    bk_plan_list_ttl: float = Field(default=300.0, gt=0, le=86400)
    log_digest_budget: float = Field(default=10.0, gt=0, le=120)
    """Longest a result reply waits for failed hosts' logs; it goes out without them after that."""
    log_file_budget: float = Field(default=60.0, gt=0, le=600)
    """Longest a *Logs* request may spend reading failed hosts' logs from BK-JOB."""

    bk_callback: Literal["on", "off"] = "on"
    callback_grace: float = Field(default=60.0, ge=0, le=86400)
    poll_tick: float = Field(default=2.0, gt=0, le=300)
    progress_interval: float = Field(default=15.0, gt=0, le=3600)
    reconcile_window: float = Field(default=120.0, gt=0, le=3600)
    slack_channel_interval: float = Field(default=1.0, ge=0, le=60)
    outbox_lease: float = Field(default=60.0, gt=0, le=3600)
    poll_lease: float = Field(default=120.0, gt=0, le=3600)

    bkjob_config: str | None = None
    bkjob_open_mode: bool = False
    """Without a policy file the bot refuses to start unless this says so: then it runs ungoverned ("open")."""
    approval_sweep_interval: float = Field(default=15.0, gt=0, le=3600)
    audit_retention_days: float | None = Field(default=None, gt=0)
    """Audit events older than this are deleted; unset keeps them forever."""
    retention_interval: float = Field(default=300.0, gt=0, le=86400)
    outbox_retention_days: float = Field(default=7.0, gt=0, le=3650)
    """Delivered Slack messages older than this are deleted from the outbox."""
    directory_cache_ttl: float = Field(default=300.0, ge=0)

    socket_ping_interval: float = Field(default=10.0, gt=0, le=120)
    """Socket Mode: seconds between pings; a connection that misses pongs for a while is replaced."""

    callback_url: AnyHttpUrl | None = None
    """The base URL BK-JOB calls back on (often an internal address); defaults to PUBLIC_URL."""
    public_url: AnyHttpUrl | None = Field(default=None, validate_default=True)
    database_url: str = "sqlite:///bkjob-bot.sqlite3"
    host: str = "0.0.0.0"
    port: int = Field(default=3000, ge=0, le=65535)
    request_timeout: float = Field(default=10.0, gt=0, le=300)
    """Longest the callback route and /healthz may take before answering 503, and a Slack body may take to arrive."""
    https_proxy: SecretStr | None = None
    """Corporate proxy for https:// and wss:// (Slack); may carry a user and password."""
    http_proxy: SecretStr | None = None
    """Corporate proxy for http:// (and for https:// when HTTPS_PROXY is not set)."""
    no_proxy: str = ""
    tls_ca_file: str | None = None
    """PEM file of CA certificates trusted for outgoing TLS besides the system's: a TLS-inspecting proxy, an internal
    BK-JOB behind a private CA."""
    """Hosts reached directly: names, `.domain` suffixes, `host:port`, or `*`."""

    metrics: Literal["on", "off"] = "on"
    """GET /metrics in Prometheus' text format; `off` serves it nowhere."""
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    """The internal port that serves /metrics alone (on HOST; 0 picks a free one): keep it inside, away from the
    load balancer that Slack and BK-JOB reach."""
    metrics_token: SecretStr | None = None
    """When set, /metrics wants `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise), and is also served on PORT;
    without it, /metrics is served only on METRICS_PORT."""
    header_timeout: float = Field(default=10.0, gt=0, le=300)
    """Longest a connection may take to send a request's headers, or stay idle between requests."""
    max_connections: int = Field(default=512, ge=8, le=100_000)
    """Open connections at most; at the limit a new one replaces the oldest that has not sent its headers."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = "auto"
    log_sql: bool = False
    """At DEBUG, also log every SQL statement with its values (aiosqlite); off unless asked for."""

    @field_validator(
        "bk_username",
        "bk_job_web_url",
        "bk_biz_id",
        "bkjob_config",
        "slack_app_token",
        "slack_signing_secret",
        "metrics_token",
        "callback_url",
        "public_url",
        "audit_retention_days",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        """An empty `VAR=` line in .env means "not set", as a person writing it expects."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("bk_callback", "bk_api_version", "bk_api_v3_path", "metrics", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("slack_bot_token", "bk_app_secret")
    @classmethod
    def _secret_is_set(cls, value: SecretStr) -> SecretStr:
        """A blank credential would start a bot that fails every call (or checks signatures against "")."""
        if not value.get_secret_value().strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("https_proxy", "http_proxy")
    @classmethod
    def _proxy_url(cls, value: SecretStr | None) -> SecretStr | None:
        """aiohttp speaks to HTTP proxies (CONNECT for TLS); the value is not echoed: it may hold a password."""
        if value is None:
            return None
        parts = urlsplit(value.get_secret_value().strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be a proxy URL such as http://proxy.example.com:3128 (user:password@ allowed)")
        return SecretStr(value.get_secret_value().strip())

    @field_validator("tls_ca_file")
    @classmethod
    def _ca_file_loads(cls, value: str | None) -> str | None:
        """A bad file would otherwise surface as every TLS connection failing, long after start."""
        if value is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=value)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"cannot load CA certificates from {value!r} ({type(exc).__name__})") from exc
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        """A bot token here would fail at apps.connections.open with a less helpful `not_allowed_token_type`."""
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token (xapp-...)")
        return value

    @field_validator("slack_signing_secret")
    @classmethod
    def _signing_secret_in_http_mode(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """HTTP mode checks every request against it; in Socket Mode Slack's side is the app token."""
        if value is None and info.data.get("slack_app_token") is None and "slack_app_token" in info.data:
            raise PydanticCustomError("missing", "required setting is not set")
        return value

    @field_validator("public_url")
    @classmethod
    def _callback_base_is_known(cls, value: AnyHttpUrl | None, info: ValidationInfo) -> AnyHttpUrl | None:
        """BK-JOB needs an address to call back on, unless callbacks are off and the poller does all the work."""
        if value is None and info.data.get("callback_url") is None and info.data.get("bk_callback", "on") == "on":
            raise PydanticCustomError("missing", "required setting is not set")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _metrics_apart(cls, value: int, info: ValidationInfo) -> int:
        """The point of METRICS_PORT is to be another port than the one Slack and BK-JOB reach."""
        if value and value == info.data.get("port"):
            raise ValueError("must differ from PORT (the port Slack and BK-JOB reach)")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    def slack_api_base(self) -> str:
        """slack_sdk joins method names onto the base, so it must end with a slash."""
        url = str(self.slack_api_url)
        return url if url.endswith("/") else url + "/"

    def bk_api_root(self) -> str:
        return str(self.bk_api_url).rstrip("/")

    def tls_context(self) -> ssl.SSLContext | None:
        """The system's CAs plus TLS_CA_FILE's, or None to use the default context."""
        if self.tls_ca_file is None:
            return None
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=self.tls_ca_file)
        return context

    def proxies(self) -> Proxies:
        return Proxies(
            https=self.https_proxy.get_secret_value() if self.https_proxy else None,
            http=self.http_proxy.get_secret_value() if self.http_proxy else None,
            no_proxy=self.no_proxy,
        )

    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def callback_root(self) -> str:
        """Where BK-JOB calls back: CALLBACK_URL, else PUBLIC_URL ("" only when BK_CALLBACK=off)."""
        url = self.callback_url or self.public_url
        return str(url).rstrip("/") if url is not None else ""

    def public_root(self) -> str:
        """The older name of `callback_root`: PUBLIC_URL used to be the only URL."""
        return self.callback_root()

    def metadata_secret(self) -> str:
        """The key that signs form metadata: the signing secret, or in Socket Mode without one, a key derived from
        the app token (every replica has it; a new token only invalidates forms open at the time)."""
        if self.slack_signing_secret is not None:
            return self.slack_signing_secret.get_secret_value()
        assert self.slack_app_token is not None  # the validator demands one of the two
        token = self.slack_app_token.get_secret_value().encode()
        return hmac.new(token, b"bkjob-bot form metadata", hashlib.sha256).hexdigest()

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line, whoever writes it."""
        optional = (self.slack_signing_secret, self.slack_app_token, self.metrics_token)
        proxies = [urlsplit(p.get_secret_value()) for p in (self.https_proxy, self.http_proxy) if p is not None]
        return [
            self.slack_bot_token.get_secret_value(),
            self.bk_app_secret.get_secret_value(),
            *(secret.get_secret_value() for secret in optional if secret is not None),
            *(p.password for p in proxies if p.password),
        ]

    def job_web_root(self) -> str | None:
        return str(self.bk_job_web_url).rstrip("/") if self.bk_job_web_url else None


def load_settings(environ: Mapping[str, str] | None = None, *, env_file: str | None = ".env") -> Settings:
    """Build settings from the environment, turning pydantic's report into one line per bad setting."""
    try:
        if environ is None:
            return Settings(_env_file=env_file)
        # model_validate does not read the process environment: the mapping is the whole truth.
        return Settings.model_validate({k.lower(): v for k, v in environ.items()})
    except ValidationError as exc:
        raise ConfigError("\n".join(_describe(err) for err in exc.errors())) from exc


def _describe(err: Mapping[str, Any]) -> str:
    name = str(err["loc"][0]).upper() if err.get("loc") else "settings"
    if err.get("type") == "missing":
        return f"{name}: required setting is not set"
    return f"{name}: {err.get('msg', 'invalid value')}"
