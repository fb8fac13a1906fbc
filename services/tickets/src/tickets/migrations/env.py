from alembic import context

from runtime.migrations import run_env
from tickets.models import Base

run_env(context, Base.metadata)
