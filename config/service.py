"""Daemon, HTTP API, scheduler, alert and notifier settings (owned by dcpue.service).

Every field has a default so a site file without a ``[service]`` table stays valid. Durations
are in minutes (``*_min``) or seconds (``*_s``); PUE values are dimensionless (kWh/kWh).
"""

from __future__ import annotations

from typing import Annotated, Literal

from dcpue.config.base import Section
from pydantic import Field, model_validator

Severity = Literal["info", "warning", "critical"]


class DriftSettings(Section):
    """PUE drift: a change detector on the residual actual − expected PUE.

    The residual is sampled every ``sample_every_min`` minutes from the rolling figure
    ``figure`` (use a window as long as the sampling interval so samples do not overlap and
    stay close to independent). During the first ``baseline_samples`` samples the detector
    learns the residual's mean (model bias) and standard deviation, unless ``bias``/``sigma``
    are given; afterwards it standardises z = (residual − bias) / sigma.

    ``cusum``: S⁺ = max(0, S⁺ + z − k), S⁻ = max(0, S⁻ − z − k) (Page 1954; Montgomery,
    *Introduction to Statistical Quality Control*, §9.1), drift when S > ``h``; the sums are
    capped at ``2h`` so a resolved fault clears in bounded time. ``ewma``: E = λz + (1 − λ)E,
    drift when |E| > L·sqrt(λ / (2 − λ)) (Roberts 1959; Montgomery §9.2).
    Hysteresis: the drift clears only once the statistic falls below ``clear_ratio`` × the limit.
    """

    enabled: bool = True
    method: Literal["cusum", "ewma"] = "cusum"
    figure: str = "pue.1h"
    sample_every_min: int = Field(default=60, ge=1)
    baseline_samples: int = Field(default=48, ge=2)
    bias: float | None = None
    sigma: float | None = Field(default=None, gt=0)
    min_sigma: float = Field(default=0.002, gt=0)
    k: float = Field(default=0.5, ge=0)
    h: float = Field(default=8.0, gt=0)
    ewma_lambda: float = Field(default=0.2, gt=0, le=1)
    ewma_l: float = Field(default=3.5, gt=0)
    clear_ratio: float = Field(default=0.5, gt=0, lt=1)
    two_sided: bool = False
    for_min: int = Field(default=60, ge=0)
    clear_for_min: int = Field(default=60, ge=0)
    severity: Severity = "warning"


#: Threshold figures with this prefix name a meter: its latest value is compared.
METER_FIGURE = "meter:"


class ThresholdRule(Section):
    """A static threshold: ``figure`` above ``above`` (or below ``below``) for ``for_min``.

    ``figure`` is a rolling figure key (``pue.1h``, ``cue.1d``, ...) or ``meter:<id>`` for the
    latest reading of a meter in its canonical unit (e.g. ``meter:rack-inlet-max`` in degC).

    The alert clears once the value is back past the threshold by ``clear_margin`` (same unit
    as the figure), so a value hovering at the threshold does not flap.
    """

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    figure: str
    above: float | None = None
    below: float | None = None
    for_min: int = Field(default=15, ge=0)
    clear_margin: float = Field(default=0.0, ge=0)
    severity: Severity = "warning"
    summary: str = ""

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdRule:
        if (self.above is None) == (self.below is None):
            raise ValueError("give exactly one of 'above' or 'below'")
        return self


class StaleSettings(Section):
    """A meter is stale when no reading arrived for ``factor`` × ``expected_interval_s``."""

    enabled: bool = True
    expected_interval_s: int = Field(default=60, gt=0)
    factor: float = Field(default=5.0, gt=1)
    severity: Severity = "warning"
    meters: list[str] | None = None


class AlertSettings(Section):
    """All alert rules; evaluated every ``evaluate_every_s`` seconds."""

    evaluate_every_s: int = Field(default=60, ge=1)
    drift: DriftSettings = DriftSettings()
    thresholds: list[ThresholdRule] = Field(
        default_factory=lambda: [
            ThresholdRule(name="PueHigh", figure="pue.1h", above=2.0, for_min=30,
                          clear_margin=0.05, severity="critical"),
        ]
    )
    stale: StaleSettings = StaleSettings()


class TlsClient(Section):
    """TLS of one outgoing connection: certificates and host names are verified against the
    system trust store (plus ``ca_file``, PEM) unless ``tls_verify = false``, an explicit
    opt-out for lab setups that is logged at start."""

    ca_file: str | None = None
    tls_verify: bool = True


class WebhookTarget(TlsClient):
    """POST every alert change as JSON to ``url``. ``headers_env`` maps a header name to the
    environment variable holding its value (e.g. an ``Authorization`` secret)."""

    kind: Literal["webhook"]
    url: str = Field(pattern=r"^https?://", repr=False)
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    headers_env: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=10.0, gt=0)


class AlertmanagerTarget(TlsClient):
    """Prometheus Alertmanager v2 API at ``url`` (e.g. ``http://127.0.0.1:9093``)."""

    kind: Literal["alertmanager"]
    url: str = Field(pattern=r"^https?://", repr=False)
    timeout_s: float = Field(default=10.0, gt=0)


class MqttTarget(TlsClient):
    """Publish each alert as retained JSON to ``{topic}/{alert id}`` (``tls = true``: MQTT over
    TLS, usually port 8883)."""

    kind: Literal["mqtt"]
    tls: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=1883, gt=0, lt=65536)
    topic: str = "dcpue/alerts"
    qos: Literal[0, 1, 2] = 1
    retain: bool = True
    username: str | None = None
    password_env: str | None = None


class EmailTarget(TlsClient):
    """Send a plain-text e-mail per alert change over SMTP.

    ``starttls``: upgrade with STARTTLS (RFC 3207, usually port 587); ``smtps``: TLS from the
    first byte (RFC 8314, usually port 465). A login needs one of them, so the password never
    crosses the network in clear.
    """

    kind: Literal["email"]
    host: str = "127.0.0.1"
    port: int = Field(default=25, gt=0, lt=65536)
    sender: str
    recipients: list[str] = Field(min_length=1)
    starttls: bool = False
    smtps: bool = False
    username: str | None = None
    password_env: str | None = None
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _tls_for_login(self) -> EmailTarget:
        if self.starttls and self.smtps:
            raise ValueError("give starttls or smtps, not both")
        if self.username and not (self.starttls or self.smtps):
            raise ValueError("a login (username) needs starttls = true or smtps = true")
        return self


NotifierTarget = Annotated[
    WebhookTarget | AlertmanagerTarget | MqttTarget | EmailTarget, Field(discriminator="kind")
]


class ScheduleSettings(Section):
    """Periodic jobs of the daemon (times in the site's time zone)."""

    write_back_every_s: int = Field(default=60, ge=1)
    proposals_every_min: int = Field(default=15, ge=1)
    retrain_at_hour: int = Field(default=3, ge=0, le=23)
    report_day_of_month: int = Field(default=1, ge=1, le=28)
    #: Days of history the daily retraining fits the plant model on.
    retrain_days: float = Field(default=28.0, gt=0)
    #: Retrain at start-up when no model exists and this many days of data are stored.
    first_train_after_days: float = Field(default=3.0, gt=0)


Scope = Literal["read", "operator"]


class ApiToken(Section):
    """One API token: ``read`` reads figures, series and alerts; ``operator`` may also act
    (acknowledge and silence alerts, accept or reject proposals, overrides). ``sites``
    restricts the token to those site ids (e.g. a supplier reading its own site only).
    The secret is the environment variable ``token_env`` names, or ``token`` in the file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    token: str | None = Field(default=None, min_length=16, repr=False)
    token_env: str | None = None
    scope: Scope = "read"
    sites: list[str] | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> ApiToken:
        if (self.token is None) == (self.token_env is None):
            raise ValueError("give exactly one of 'token' or 'token_env'")
        return self


class LimitSettings(Section):
    """Bounds on what one request may ask: body size in bytes, Grafana targets per query,
    points per series, and the longest queryable range in days."""

    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_targets: int = Field(default=50, ge=1)
    max_points: int = Field(default=5000, ge=10)
    max_range_days: float = Field(default=3660.0, gt=0)
    max_export_rows: int = Field(default=1_000_000, ge=1)


class ServiceSettings(Section):
    """HTTP API, scheduler and alerting.

    ``bearer_token`` (or the environment variable named by ``bearer_token_env``) is an
    operator token for every route except ``/healthz`` and the dashboard's page and code;
    ``tokens`` adds named, scoped ones. Tokens go in the ``Authorization: Bearer`` header;
    ``?access_token=`` (RFC 6750 §2.3, for Grafana set-ups that cannot send headers) is
    accepted only with ``query_token = true``, since URLs end up in proxy logs.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, lt=65536)
    bearer_token: str | None = Field(default=None, repr=False)
    bearer_token_env: str | None = None
    tokens: list[ApiToken] = Field(default_factory=list)
    query_token: bool = False
    limits: LimitSettings = LimitSettings()
    public_url: str = ""
    #: Rolling figure the dashboard and ``/api/pue`` show as the current PUE.
    current_figure: str = "pue.1h"
    schedule: ScheduleSettings = ScheduleSettings()
    alerts: AlertSettings = AlertSettings()
    notifiers: list[NotifierTarget] = Field(default_factory=list)
