"""The Perilflow REST API: OasisPlatform v2 paths and JSON shapes on FastAPI (see plugins/README.md)."""
