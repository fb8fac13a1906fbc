"""VPN backend drivers behind one interface, chosen by `VPN_BACKEND`."""

from __future__ import annotations

from provisioner.backends.base import AccessDetails, AccountMissing, BackendError, VpnBackend
from provisioner.config import Settings
from runtime.db import Database

__all__ = ["AccessDetails", "AccountMissing", "BackendError", "VpnBackend", "build_backend",
           "build_server_backend"]


def build_backend(settings: Settings, db: Database) -> VpnBackend:
    if settings.vpn_backend == "outline":
        from provisioner.backends.outline import OutlineBackend

        return OutlineBackend(settings.outline_api_url or "", settings.outline_cert_sha256 or "",
                              key_secret=settings.vpn_key_secret,
                              data_limit_bytes=settings.vpn_data_limit_bytes,
                              timeout=settings.vpn_timeout_seconds)
    if settings.vpn_backend == "marzban":
        from provisioner.backends.marzban import MarzbanBackend

        return MarzbanBackend(settings.marzban_base_url or "", settings.marzban_username or "",
                              settings.marzban_password or "", proxies=settings.marzban_proxies,
                              data_limit_bytes=settings.vpn_data_limit_bytes,
                              timeout=settings.vpn_timeout_seconds)
    if settings.vpn_backend == "remnawave":
        from provisioner.backends.remnawave import RemnawaveBackend

        return RemnawaveBackend(settings.remnawave_base_url or "",
                                settings.remnawave_api_token or "",
                                squads=settings.remnawave_squads,
                                data_limit_bytes=settings.vpn_data_limit_bytes,
                                timeout=settings.vpn_timeout_seconds)
    if settings.vpn_backend == "xui":
        from provisioner.backends.xui import XuiBackend

        return XuiBackend(settings.xui_base_url or "", settings.xui_username or "",
                          settings.xui_password or "", inbound_ids=settings.xui_inbound_ids,
                          sub_base_url=settings.xui_sub_base_url or "",
                          data_limit_bytes=settings.vpn_data_limit_bytes,
                          timeout=settings.vpn_timeout_seconds)
    from provisioner.backends.sandbox import SandboxBackend
    from runtime.faults import sandbox_faults

    return SandboxBackend(db, host=settings.sandbox_vpn_host, port=settings.sandbox_vpn_port,
                          faults=sandbox_faults(settings),
                          data_limit_bytes=settings.vpn_data_limit_bytes)


def build_server_backend(kind: str, base_url: str | None, options: dict, credentials: dict,
                         settings: Settings, db: Database, env_backend: VpnBackend,
                         server_id: str = "") -> VpnBackend:
    """The driver of one server of the pool, from its row (options and decrypted credentials);
    what a row does not say (timeouts, the default data limit) comes from the settings. Sandbox
    servers share one simulated store, each with a fault switch of its own (so one of them can
    be told to fail) and its own accounts."""
    limit, timeout = settings.vpn_data_limit_bytes, settings.vpn_timeout_seconds
    if kind == "outline":
        from provisioner.backends.outline import OutlineBackend

        return OutlineBackend(credentials["api_url"], options["cert_sha256"],
                              key_secret=settings.vpn_key_secret, data_limit_bytes=limit,
                              timeout=timeout)
    if kind == "marzban":
        from provisioner.backends.marzban import MarzbanBackend

        return MarzbanBackend(base_url or "", credentials["username"], credentials["password"],
                              proxies=list(options.get("proxies") or ["vless"]),
                              data_limit_bytes=limit, timeout=timeout)
    if kind == "remnawave":
        from provisioner.backends.remnawave import RemnawaveBackend

        return RemnawaveBackend(base_url or "", credentials["api_token"],
                                squads=list(options["squads"]), data_limit_bytes=limit,
                                timeout=timeout)
    if kind == "xui":
        from provisioner.backends.xui import XuiBackend

        return XuiBackend(base_url or "", credentials["username"], credentials["password"],
                          inbound_ids=[int(i) for i in options["inbound_ids"]],
                          sub_base_url=options["sub_base_url"], data_limit_bytes=limit,
                          timeout=timeout)
    from provisioner.backends.sandbox import SandboxBackend
    from runtime.faults import FaultSwitch

    faults = FaultSwitch(settings.redis_url, f"{sandbox_faults_key(settings, env_backend)}:"
                                             f"{server_id}")
    return SandboxBackend(db, host=options.get("host") or settings.sandbox_vpn_host,
                          port=int(options.get("port") or settings.sandbox_vpn_port),
                          faults=faults, data_limit_bytes=limit, server=server_id)


def sandbox_faults_key(settings: Settings, env_backend: VpnBackend) -> str:
    """The Redis key of the sandbox's own faults (the seeded server's when it is a sandbox)."""
    from provisioner.backends.sandbox import SandboxBackend

    if isinstance(env_backend, SandboxBackend):
        return env_backend.faults.key
    return f"{settings.jobs_prefix}:{settings.service_name}:sandbox-faults"
