"""The search: spaces from YAML, searchers by name, the trial objective, the Tuner."""
