"""What a student may do on Kafka, as ACLs: everything their work needs under their
own prefix, reading the teacher's feed, and nothing else.

The broker denies whatever no ACL allows (``allow.everyone.if.no.acl.found=false``),
so isolation is the absence of rules: no student holds a rule that names another
student's prefix, and none may write the feed.
"""

from __future__ import annotations

from typing import Any

from pipeline_lib.classroom.roster import prefix

# A student's own topics: produce, consume, create (a lab makes topics of its own),
# describe (lag, the board) and delete; their configs read, never altered.
TOPIC_RIGHTS = ("READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "DELETE")
GROUP_RIGHTS = ("READ", "DESCRIBE", "DELETE")
FEED_RIGHTS = ("READ", "DESCRIBE")


def student_acls(student_id: str, feed_topic: str) -> list[Any]:
    """The ALLOW rules of one student (kafka-python ``ACL`` objects)."""
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    def allow(operation: str, kind: Any, name: str, pattern: Any) -> Any:
        return ACL(
            principal=f"User:{student_id}",
            host="*",
            operation=ACLOperation[operation],
            permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(kind, name, pattern),
        )

    own, literal = ACLResourcePatternType.PREFIXED, ACLResourcePatternType.LITERAL
    start = prefix(student_id)
    return [
        *(allow(op, ResourceType.TOPIC, start, own) for op in TOPIC_RIGHTS),
        *(allow(op, ResourceType.GROUP, start, own) for op in GROUP_RIGHTS),
        *(allow(op, ResourceType.TOPIC, feed_topic, literal) for op in FEED_RIGHTS),
    ]


def principal_filter(student_id: str) -> Any:
    """A filter matching every ACL of the student (to remove them all)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    return ACLFilter(
        principal=f"User:{student_id}",
        host="*",
        operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY),
    )
