from alembic import context

from runtime.migrations import run_env
from telegram.models import Base

run_env(context, Base.metadata)
