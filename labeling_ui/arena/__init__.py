"""The Arena (issue #21): reviewers chat with two anonymous models of the run and vote A / B / tie / both bad."""
