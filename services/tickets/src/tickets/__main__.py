"""`python -m tickets api|worker|migrate|bootstrap`."""

from runtime.service import ServiceDefinition, run_cli
from tickets import retention
from tickets.app import create_api
from tickets.config import Settings
from tickets.stats import StatsRepository
from tickets.worker import build_worker

definition = ServiceDefinition(name="tickets", settings_factory=Settings, create_api=create_api,
                               build_worker=build_worker, retention=retention.rules,
                               stats_days=StatsRepository)

if __name__ == "__main__":
    run_cli(definition)
