"""Grafana dashboards as code (boards.py, rendered by build.py into json/), the datasource macro
expander the tests use (macros.py), and Grafana provisioning over its HTTP API (provision.py)."""
