"""Developer tools that run from the source checkout, not shipped in the wheel or the image:
the dev stack and the production twin, the dag.test() harness, the demo."""
