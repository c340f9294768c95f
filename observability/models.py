"""Projects, their API keys, and the request records they send."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.search import SearchVectorField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connections, models
from django.utils import timezone
from pgvector.django import VectorField


class ProjectQuerySet(models.QuerySet):
    def visible_to(self, user) -> ProjectQuerySet:
        """The projects a signed-in user may see: all for staff, else their memberships'."""
        if user.is_staff:
            return self.all()
        return self.filter(memberships__user=user)


class Project(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    # The project's last successful write: reads by any of its keys go to the primary for
    # READ_AFTER_WRITE_TTL seconds after (db_routing.py).
    last_write_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ProjectQuerySet.as_manager()

    class Meta:
        db_table = "apm_project"
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    def record_write(self) -> None:
        """Remember that this project was written to, at most once a second."""
        now = timezone.now()
        if self.last_write_at is not None and now - self.last_write_at < timedelta(seconds=1):
            return
        Project.objects.filter(pk=self.pk).update(last_write_at=now)
        self.last_write_at = now


class Role(models.TextChoices):
    VIEWER = "viewer"
    ADMIN = "admin"


class Membership(models.Model):
    """A user's access to a project in the UI: viewers read, admins also manage keys and
    settings. Staff users see and manage every project without one."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "apm_membership"
        ordering = ["project", "user"]
        constraints = [
            # The UI looks up the membership of (user, project) on every page.
            models.UniqueConstraint(fields=["user", "project"], name="apm_membership_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project.slug} ({self.role})"

    @staticmethod
    def role_of(user, project: Project) -> str | None:
        """The user's role in the project (staff: admin), None without access."""
        if user.is_staff:
            return Role.ADMIN
        return (
            Membership.objects.filter(user=user, project=project)
            .values_list("role", flat=True)
            .first()
        )


class LoginThrottle(models.Model):
    """Failed sign-ins per key (a user name from an address, or an address), in a window.

    In the database, not a per-process cache: every gunicorn worker sees the same count.
    """

    key = models.CharField(max_length=64, primary_key=True)  # SHA-256 of what is counted
    failures = models.PositiveIntegerField(default=0)
    window_start = models.DateTimeField()

    class Meta:
        db_table = "apm_login_throttle"

    def __str__(self) -> str:
        return f"{self.key[:12]}: {self.failures} failures since {self.window_start}"


class ApiKeyQuerySet(models.QuerySet):
    def issue(self, project: Project, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
        """Create a key; the plaintext is returned here once and never stored."""
        key = self.model(project=project, name=name, scopes=sorted(set(scopes)))
        plaintext = key.set_new_secret()
        key.save()
        return key, plaintext

    def authenticate(self, plaintext: str) -> ApiKey | None:
        """The active key matching `plaintext`, or None."""
        prefix = ApiKey.prefix_of(plaintext)
        if prefix is None:
            return None
        key = self._active_by_prefix(prefix)
        if key is None or not secrets.compare_digest(key.key_hash, ApiKey.hash(plaintext)):
            return None
        return key

    def _active_by_prefix(self, prefix: str) -> ApiKey | None:
        """The unrevoked key with this prefix, its project loaded. SQL by hand: this runs
        on every API request, and building and compiling the same ORM queryset took
        most of the CPU of the lookup (0.6 of 1.0 ms; by hand, 0.2 ms)."""
        with connections[self.db].cursor() as cursor:  # the database the ORM would read
            cursor.execute(ACTIVE_KEY_BY_PREFIX, [prefix])
            found = cursor.fetchone()
        if found is None:
            return None
        key = ApiKey.from_db(self.db, KEY_FIELDS, found[: len(KEY_FIELDS)])
        key.project = Project.from_db(self.db, PROJECT_FIELDS, found[len(KEY_FIELDS) :])
        return key


# The fields of ApiKey and Project, in their models' order (as Model.from_db takes them;
# a test checks that these are all of them). The prefix is unique: one row at most.
KEY_FIELDS = ("id", "project_id", "name", "prefix", "key_hash", "scopes", "created_at",
              "last_used_at", "revoked_at")  # fmt: skip
PROJECT_FIELDS = ("id", "slug", "name", "created_at", "last_write_at")
ACTIVE_KEY_BY_PREFIX = """
SELECT k.id, k.project_id, k.name, k.prefix, k.key_hash, k.scopes, k.created_at,
       k.last_used_at, k.revoked_at,
       p.id, p.slug, p.name, p.created_at, p.last_write_at
FROM apm_api_key k JOIN apm_project p ON p.id = k.project_id
WHERE k.prefix = %s AND k.revoked_at IS NULL
"""


class ApiKey(models.Model):
    """A project's credential. Stored as a lookup prefix plus the SHA-256 of the whole key.

    SHA-256 (not a slow password hash) is right here: the secret part carries 256 bits
    of randomness, so it cannot be brute-forced, and every API call verifies it.
    """

    SCOPE_INGEST = "ingest"  # send data: ingest, OTLP, create one record
    SCOPE_READ = "read"  # query: records, KPIs, search
    SCOPE_ADMIN = "admin"  # change or delete what is stored (DELETE of a record)
    SCOPES = (SCOPE_INGEST, SCOPE_READ, SCOPE_ADMIN)
    KEY_MARKER = "apm_"
    PREFIX_BYTES = 6

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # Looked up on every authenticated request (unique index).
    prefix = models.CharField(max_length=2 * PREFIX_BYTES, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = ArrayField(models.CharField(max_length=16, choices=[(s, s) for s in SCOPES]))
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        db_table = "apm_api_key"
        ordering = ["project", "name"]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.name} ({self.KEY_MARKER}{self.prefix}_…)"

    @staticmethod
    def hash(plaintext: str) -> str:
        return hashlib.sha256(plaintext.encode()).hexdigest()

    @classmethod
    def prefix_of(cls, plaintext: str) -> str | None:
        if not plaintext.startswith(cls.KEY_MARKER):
            return None
        prefix, _, secret = plaintext[len(cls.KEY_MARKER) :].partition("_")
        if len(prefix) != 2 * cls.PREFIX_BYTES or not secret:
            return None
        return prefix

    def set_new_secret(self) -> str:
        """Give this (unsaved) key a fresh secret; returns the plaintext, kept nowhere."""
        self.prefix = secrets.token_hex(self.PREFIX_BYTES)
        plaintext = f"{self.KEY_MARKER}{self.prefix}_{secrets.token_urlsafe(32)}"
        self.key_hash = self.hash(plaintext)
        return plaintext

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def revoke(self) -> None:
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])

    def touch(self) -> None:
        """Record use, at most once per interval.

        The check on the freshly loaded value skips the write on most requests; the
        conditional UPDATE keeps concurrent requests from writing twice.
        """
        now = timezone.now()
        stale_before = now - timedelta(seconds=settings.APM_API_KEY_TOUCH_INTERVAL_S)
        if self.last_used_at is not None and self.last_used_at >= stale_before:
            return
        ApiKey.objects.filter(pk=self.pk).filter(
            models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lt=stale_before)
        ).update(last_used_at=now)
        self.last_used_at = now


class StatusClass(models.TextChoices):
    INFORMATIONAL = "1xx"
    SUCCESS = "2xx"
    REDIRECT = "3xx"
    CLIENT_ERROR = "4xx"
    SERVER_ERROR = "5xx"

    @property
    def status_range(self) -> tuple[int, int]:
        """Half-open range of status codes in this class."""
        low = int(self.value[0]) * 100
        return low, low + 100


class ApiRequest(models.Model):
    """One HTTP request served by a monitored service.

    The table is created by migration 0001 with hand-written DDL: partitioned by day on
    `time` (portable backend) or a TimescaleDB hypertable (migration 0002). Its key is
    (project_id, event_id, time) (migration 0010): the client's idempotency key within
    its project, so that one tenant's ids never collide with another's; it must contain
    `time` because every unique index of a partitioned table or hypertable contains the
    partition key. There is no surrogate id: it would cost a sequence and a third index
    on every ingested row, and `event_id` already identifies a request in its project.
    """

    pk = models.CompositePrimaryKey("project_id", "event_id", "time")
    event_id = models.UUIDField(default=uuid.uuid4)
    time = models.DateTimeField()
    # No database-level foreign key: a per-row FK check would slow bulk ingest, and the
    # project always comes from an authenticated API key.
    project = models.ForeignKey(
        Project, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    service = models.CharField(max_length=128)
    endpoint = models.CharField(max_length=512)
    method = models.CharField(max_length=16)
    status_code = models.SmallIntegerField(
        validators=[MinValueValidator(100), MaxValueValidator(599)]
    )
    latency_ms = models.FloatField(validators=[MinValueValidator(0)])
    trace_id = models.CharField(max_length=32, blank=True, default="")
    span_id = models.CharField(max_length=16, blank=True, default="")
    environment = models.CharField(max_length=64, blank=True, default="")
    host = models.CharField(max_length=255, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    request_bytes = models.BigIntegerField(null=True, blank=True)
    response_bytes = models.BigIntegerField(null=True, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    # The service's Apdex threshold when the request was received (ServiceSettings), so
    # rollups count satisfied/tolerating requests without joining the settings table, and
    # a changed threshold applies to requests received after the change.
    apdex_t_ms = models.FloatField(default=300.0)
    # The error group of a failed request (5xx or an exception); NULL for the others.
    error_group_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        db_table = "api_request"
        # Declared here so Django's state matches the DDL of migration 0001.
        indexes = [
            # Every time-window scan of one project: the request list (newest first, also
            # when filtered by service: the raw tail is short) and the KPI raw tail.
            models.Index(fields=["project", "-time"], name="api_req_project_time"),
            # An error group's latest requests (its samples; the request list's filter).
            # Partial: only failed requests are in it, so ingest of the others pays nothing.
            models.Index(
                fields=["project", "error_group_id", "-time"],
                name="api_req_error_group",
                condition=models.Q(error_group_id__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.endpoint} {self.status_code} {self.latency_ms:.1f}ms"

    @property
    def status_class(self) -> str:
        return f"{self.status_code // 100}xx"


class Dimension(models.TextChoices):
    """The dimensions a client controls, each capped (settings APM_*_CARDINALITY_CAP)."""

    SERVICE = "service"
    ENVIRONMENT = "environment"
    ENDPOINT = "endpoint"


class DimensionValue(models.Model):
    """A value of a dimension that ingest admitted under its cap: per project for services
    and environments, per service (`scope`) for endpoints. Events with further values are
    stored under the overflow value, so a client sending raw ids or made-up names cannot
    explode the rollups."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    dimension = models.CharField(max_length=16, choices=Dimension.choices)
    scope = models.CharField(max_length=128, blank=True, default="")  # the service of an endpoint
    value = models.CharField(max_length=512)
    first_seen = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "apm_dimension_value"
        ordering = ["dimension", "scope", "value"]
        constraints = [
            # Admission reads the values of one (project, dimension, scope); the endpoint
            # list reads a project's endpoints by service.
            models.UniqueConstraint(
                fields=["project", "dimension", "scope", "value"], name="apm_dimension_value_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dimension} {self.scope}/{self.value}" if self.scope else self.value


class Overflow(models.Model):
    """How many events went to a dimension's overflow value, per project and scope."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    dimension = models.CharField(max_length=16, choices=Dimension.choices)
    scope = models.CharField(max_length=128, blank=True, default="")
    events = models.BigIntegerField(default=0)
    last_at = models.DateTimeField()

    class Meta:
        db_table = "apm_overflow"
        constraints = [
            models.UniqueConstraint(
                fields=["project", "dimension", "scope"], name="apm_overflow_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dimension} {self.scope}: {self.events} overflowed"


class RateBucket(models.Model):
    """Token bucket of one API key: ingest (events per second) or reads (requests per
    second), shared by every worker (observability/ratelimit.py)."""

    INGEST = "ingest"
    READ = "read"

    pk = models.CompositePrimaryKey("key_id", "kind")
    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=[(INGEST, INGEST), (READ, READ)])
    tokens = models.FloatField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "apm_rate_bucket"

    def __str__(self) -> str:
        return f"{self.kind} bucket of key {self.key_id}: {self.tokens:.0f} tokens"


class ServiceSettingsQuerySet(models.QuerySet):
    def apdex_thresholds(self, project_id: int, services: set[str]) -> dict[str, float]:
        """Apdex T of each service; the APM_APDEX_T_MS default for services without settings."""
        found = dict(
            self.filter(project_id=project_id, service__in=services).values_list(
                "service", "apdex_t_ms"
            )
        )
        return {service: found.get(service, settings.APM_APDEX_T_MS) for service in services}


class ServiceSettings(models.Model):
    """Per-service options. Apdex: satisfied <= T, tolerating <= 4T, 5xx always frustrated."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    service = models.CharField(max_length=128)
    apdex_t_ms = models.FloatField(
        "Apdex T (ms)", default=300.0, validators=[MinValueValidator(1), MaxValueValidator(600_000)]
    )

    objects = ServiceSettingsQuerySet.as_manager()

    class Meta:
        db_table = "apm_service_settings"
        verbose_name_plural = "service settings"
        constraints = [
            # Ingest looks thresholds up by (project, service).
            models.UniqueConstraint(
                fields=["project", "service"], name="apm_service_settings_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug}/{self.service}: T={self.apdex_t_ms:g} ms"


class Document(models.Model):
    """The searchable text of requests, masked, stored once per distinct text.

    Many requests read the same ("GET /cart 200 ~30 ms checkout production"), so each
    distinct text is embedded once; `doc_hash` is the SHA-256 of the text.
    """

    doc_hash = models.CharField(max_length=64, primary_key=True)
    text = models.TextField()
    # Keyword search: websearch_to_tsquery('simple', q) @@ search (GIN index, 0008).
    search = SearchVectorField()

    class Meta:
        db_table = "apm_document"

    def __str__(self) -> str:
        return self.text[:80]


class Embedding(models.Model):
    """A document's embedding by one model (HNSW indexes per dimension, migration 0008)."""

    pk = models.CompositePrimaryKey("model", "doc_hash")
    model = models.CharField(max_length=100)
    doc_hash = models.CharField(max_length=64)
    dim = models.PositiveSmallIntegerField()
    embedding = VectorField()

    class Meta:
        db_table = "apm_embedding"

    def __str__(self) -> str:
        return f"{self.model} {self.doc_hash[:12]}"


class RequestDocument(models.Model):
    """Which document a request reads as; keyed like the request it belongs to."""

    pk = models.CompositePrimaryKey("project_id", "event_id", "time")
    event_id = models.UUIDField()
    time = models.DateTimeField()
    # No index of its own: searches find rows by (doc_hash, project, time), retention by time.
    project = models.ForeignKey(
        Project, on_delete=models.DO_NOTHING, db_constraint=False, db_index=False, related_name="+"
    )
    service = models.CharField(max_length=128)
    doc_hash = models.CharField(max_length=64)

    class Meta:
        db_table = "apm_request_document"
        indexes = [
            # Search: whether a project has requests reading as a document (in a window),
            # and the latest of them, in index order.
            models.Index(fields=["doc_hash", "project", "-time"], name="apm_reqdoc_hash_time"),
            # Retention deletes by time.
            models.Index(fields=["time"], name="apm_reqdoc_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} -> {self.doc_hash[:12]}"


class EmbeddingCursor(models.Model):
    """How far the embedding backfill has come, per model and project (resumable)."""

    pk = models.CompositePrimaryKey("model", "project")
    model = models.CharField(max_length=100)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    time = models.DateTimeField()
    event_id = models.UUIDField()

    class Meta:
        db_table = "apm_embedding_cursor"

    def __str__(self) -> str:
        return f"{self.model} at {self.time}"


class IdempotencyKey(models.Model):
    """An ingest request sent with an `Idempotency-Key` header, and what it stored.

    A retry with the same key and body is answered with `result` and stores nothing; the
    same key with another body is refused. `result` is None while the first request is
    still being processed. Kept APM_IDEMPOTENCY_TTL_HOURS (the jobs delete older keys).
    """

    pk = models.CompositePrimaryKey("project_id", "key")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the door and the (decompressed) body: "the same request".
    fingerprint = models.CharField(max_length=64)
    result = models.JSONField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "apm_idempotency_key"
        indexes = [
            # Expiry deletes by age.
            models.Index(fields=["created_at"], name="apm_idempotency_created"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}/{self.key}"


class ErrorGroup(models.Model):
    """One problem: the failed requests of a project that share a fingerprint
    (observability/error_groups/fingerprint.py)."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"
        IGNORED = "ignored"

    # No index of its own: the unique (project, fingerprint) and the list's index lead with it.
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    fingerprint = models.CharField(max_length=64)
    version = models.PositiveSmallIntegerField()  # of the fingerprint algorithm
    kind = models.CharField(max_length=16)  # client, stack, exception, message, status
    service = models.CharField(max_length=128)
    # The endpoint when it is part of the fingerprint ('' when the group spans endpoints).
    endpoint = models.CharField(max_length=512, blank=True, default="")
    title = models.TextField()  # a real message of the group (never the normalised one)
    exception_type = models.CharField(max_length=255, blank=True, default="")
    stacktrace = models.TextField(blank=True, default="")  # one occurrence's, trimmed
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.BigIntegerField(default=0)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # A resolved group seen again is reopened: a regression.
    reopened_at = models.DateTimeField(null=True, blank=True)
    times_reopened = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "apm_error_group"
        constraints = [
            # Ingest finds a group by its fingerprint within the project.
            models.UniqueConstraint(
                fields=["project", "fingerprint"], name="apm_error_group_fingerprint"
            ),
        ]
        indexes = [
            # The list: a project's groups by when they were last seen.
            models.Index(fields=["project", "-last_seen"], name="apm_error_group_last_seen"),
        ]

    def __str__(self) -> str:
        return f"{self.service}: {self.title[:60]}"


class ErrorGroupHour(models.Model):
    """How many failed requests a group had in one UTC hour (its timeline)."""

    pk = models.CompositePrimaryKey("group_id", "bucket")
    # The primary key leads with it.
    group = models.ForeignKey(
        ErrorGroup, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    bucket = models.DateTimeField()
    count = models.BigIntegerField()

    class Meta:
        db_table = "apm_error_group_hour"

    def __str__(self) -> str:
        return f"{self.group_id} {self.bucket:%Y-%m-%d %H}h: {self.count}"


class ErrorGroupEndpoint(models.Model):
    """An endpoint a group was seen on, with its count."""

    pk = models.CompositePrimaryKey("group_id", "endpoint", "method")
    # The primary key leads with it.
    group = models.ForeignKey(
        ErrorGroup, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    endpoint = models.CharField(max_length=512)
    method = models.CharField(max_length=16)
    count = models.BigIntegerField()
    last_seen = models.DateTimeField()

    class Meta:
        db_table = "apm_error_group_endpoint"

    def __str__(self) -> str:
        return f"{self.group_id} {self.method} {self.endpoint}: {self.count}"


class ErrorGroupDelta(models.Model):
    """Occurrences ingest stored and the `error_group_counts` job has not yet added to
    their group (observability/error_groups/store.py): one row per batch, group, hour,
    endpoint and method. Short-lived: folded every few seconds."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+", db_index=False)
    # No index: the table holds a few seconds of deltas; a deleted group takes its own.
    group = models.ForeignKey(
        ErrorGroup, on_delete=models.CASCADE, related_name="+", db_index=False
    )
    bucket = models.DateTimeField()  # the UTC hour
    endpoint = models.CharField(max_length=512)
    method = models.CharField(max_length=16)
    count = models.BigIntegerField()
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        db_table = "apm_error_group_delta"

    def __str__(self) -> str:
        return f"{self.group_id} +{self.count}"


# SLOs, alerts and notifications live in their package; imported here so that Django
# registers them with this app.
from observability.alerting.models import (  # noqa: E402, F401
    Alert,
    AlertEvent,
    Channel,
    Delivery,
    DeliveryAttempt,
    NotificationRule,
    Slo,
    SloStatus,
)
