"""Results and specs to people and files: summaries, tables, plots, timelines."""
