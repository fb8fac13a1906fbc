"""Payment providers behind one interface (`base`): a module per provider, each registered by
name in `billing.wiring`."""
