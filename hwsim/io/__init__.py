"""The edge: files to spec objects and back (YAML/JSON, JSON Schemas, catalog, patches)."""
