"""A plug-in for jepa-orchestrator: a JEPA on vectors, its dataset and its evaluation."""
