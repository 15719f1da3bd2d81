"""Stage 3: a reward model learned from reviewers' rankings (`python -m reward`)."""
