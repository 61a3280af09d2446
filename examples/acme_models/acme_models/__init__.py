"""A team's own model code, as Retrainer takes it: a transformer, a pipeline factory and a metric."""
