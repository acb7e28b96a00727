"""The kept proxy in front of the control plane (Caddy): its config, the pusher that keeps it current, and the
access-log reader that tells the sleeper which Spaces are in use. docs/router.md describes the data path."""
