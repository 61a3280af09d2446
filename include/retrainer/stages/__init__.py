"""One module per DAG stage: load, call the pure functions below, record."""
