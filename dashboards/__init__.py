"""Grafana dashboards as code (boards.py, rendered by build.py into json/) and Grafana provisioning over
its HTTP API (provision.py). The datasource's SQL dialect lives in schemas/grafana_sql.py."""
