"""Search data follows its requests: links to requests past raw retention go, then the
documents and embeddings no request reads as any more."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.backends.base.base import BaseDatabaseWrapper

DELETE_OLD_LINKS = "DELETE FROM apm_request_document WHERE time < %(cutoff)s"
DELETE_UNREAD_DOCUMENTS = """
DELETE FROM apm_document AS d
WHERE NOT EXISTS (SELECT 1 FROM apm_request_document AS r WHERE r.doc_hash = d.doc_hash)
"""
DELETE_UNUSED_EMBEDDINGS = """
DELETE FROM apm_embedding AS e
WHERE NOT EXISTS (SELECT 1 FROM apm_document AS d WHERE d.doc_hash = e.doc_hash)
"""
STEPS = (
    ("apm_request_document", DELETE_OLD_LINKS),
    ("apm_document", DELETE_UNREAD_DOCUMENTS),
    ("apm_embedding", DELETE_UNUSED_EMBEDDINGS),
)


def apply_retention(connection: BaseDatabaseWrapper, cutoff: datetime) -> dict[str, int]:
    """Delete search data of requests older than `cutoff`; rows deleted per table."""
    deleted = {}
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        for table, statement in STEPS:
            cursor.execute(statement, {"cutoff": cutoff})
            deleted[table] = cursor.rowcount
    return deleted
