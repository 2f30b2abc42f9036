"""Builders of the offline random-weight demo models (dev tooling, not served code).

``python -m demos.<family> --out models`` writes one family's demo model folder;
``scripts/setup.sh`` runs them all. Each builder uses its library's own model
classes, so the workers load the result through the users' code path.
"""
