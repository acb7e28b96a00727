"""The kept proxy in front of the control plane (HAProxy): its config and maps, the pusher that keeps them
current, and the log reader that tells the sleeper which Spaces are in use. docs/router.md describes the data path."""
