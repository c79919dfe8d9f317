"""Ray-based orchestrator that pretrains JEPA models in FLOP-budgeted sweeps."""
