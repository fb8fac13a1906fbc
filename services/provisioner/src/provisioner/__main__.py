"""`python -m provisioner api|worker|migrate|bootstrap|retention-cleanup`."""

from provisioner import retention
from provisioner.app import create_api
from provisioner.config import Settings
from provisioner.stats import StatsRepository
from provisioner.worker import build_worker
from runtime.service import ServiceDefinition, run_cli

definition = ServiceDefinition(name="provisioner", settings_factory=Settings,
                               create_api=create_api, build_worker=build_worker,
                               retention=retention.rules, stats_days=StatsRepository)

if __name__ == "__main__":
    run_cli(definition)
