"""Gates on data and candidates: the Great Expectations gate, drift, model checks, candidate vs champion."""
