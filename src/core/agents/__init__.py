"""Agent definitions (YAML) and their loading."""
