"""JSON Schemas of hwsim file formats (v1/*.json)."""
