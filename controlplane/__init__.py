"""Spaceyard control plane: API, git server, scheduler, runtimes, router, metering, dashboard."""
