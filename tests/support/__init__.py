"""Helpers the test folders share (imported as ``tests.support.<module>``; pytest puts the checkout on
``sys.path``, see ``pythonpath`` in pyproject.toml).

- :mod:`tests.support.champion`: the history archived and the first champion trained through the retrain
  path's own stages (every step's output, or just the registration);
- :mod:`tests.support.dags`: ``dag.test()`` runs of the real DAGs for the integration tests: a store of
  their own, model configs derived from bikeshare, seeded history, run and XCom look-ups;
- :mod:`tests.support.decisions`: decision records without data (the policy-state tests);
- :mod:`tests.support.e2e`: what the tests against the real Airflow components share;
- :mod:`tests.support.headless`: a headless Chromium driven over the DevTools protocol (browser test);
- :mod:`tests.support.streams`: small synthetic streams (a stable one with row ids and its config, one
  whose concept flips) and the delivery contract's write-then-rename.

Starting and stopping the stack itself is product code: :mod:`devtools.stack`; the ``dag.test()``
harness too (the demo uses it): :mod:`devtools.harness`.
"""
