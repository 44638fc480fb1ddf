"""Whether the rollup schema is there for the service to read (`serve` at start, `/readyz`)."""

from __future__ import annotations

import logging
from enum import Enum
from functools import cache

from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from dashboard_metrics.core import migrate
from dashboard_metrics.core.db import DatabaseError

log = logging.getLogger("dashboard_metrics.http")


class Schema(Enum):
    CURRENT = "current"
    MISSING = "missing"  # never migrated (or an empty database)
    OUTDATED = "outdated"  # an older revision: `migrate` has not run for this version
    NEWER = "newer"  # a revision this version does not know: a newer one migrated first


@cache
def _revisions() -> frozenset[str]:
    scripts = ScriptDirectory(str(migrate.MIGRATIONS))
    return frozenset(script.revision for script in scripts.walk_revisions())


def schema_state(engine: Engine) -> Schema:
    """Raises SQLAlchemyError when the database cannot be reached."""
    revision = migrate.current_revision(engine)
    if revision is None:
        return Schema.MISSING
    if revision == migrate.head_revision():
        return Schema.CURRENT
    return Schema.OUTDATED if revision in _revisions() else Schema.NEWER


def readable(state: Schema) -> bool:
    # A newer revision only adds to the schema: an older replica keeps serving in a rollout.
    return state in (Schema.CURRENT, Schema.NEWER)


def require_schema(engine: Engine) -> None:
    """`serve` refuses an unmigrated rollup database (one line, non-zero exit), as `aggregate`
    does. An unreachable one is an outage: the service starts and reports not ready."""
    try:
        state = schema_state(engine)
    except SQLAlchemyError:
        log.warning("rollup database unreachable at start; serving, not ready until it answers")
        return
    if not readable(state):
        raise DatabaseError(
            f"the rollup schema is {state.value}: run `dashboard-metrics migrate` first"
        )
    if state is Schema.NEWER:
        log.warning("the rollup schema is newer than this version; serving it as it is")
