"""Workflows over the stages: the demo, the paper's findings in miniature (reproduce, claims) and self-training
rounds. Each drives the stages' own Python APIs; the CLI is the only layer above."""
