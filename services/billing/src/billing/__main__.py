"""`python -m billing api|worker|migrate|bootstrap`."""

from pathlib import Path

from billing.app import create_api
from billing.config import Settings
from billing.worker import build_worker
from runtime.service import ServiceDefinition, run_cli

definition = ServiceDefinition(
    name="billing",
    settings_factory=Settings,
    migrations=Path(__file__).parent / "migrations",
    create_api=create_api,
    build_worker=build_worker,
)

if __name__ == "__main__":
    run_cli(definition)
