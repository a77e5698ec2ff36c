"""Model providers behind one interface (`core.providers.base.ModelProvider`)."""
