"""Spaceyard builder: turns one commit of a Space repo into a container image (see docs/build-contract.md)."""
