"""Alert rules defined once (rules.py): rendered for Grafana (grafana.py) and run by the built-in
evaluator (evaluator.py), which notifies webhooks (notify.py)."""
