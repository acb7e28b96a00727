"""Generated Python stubs for the kubelet pod-resources v1 gRPC API (see api.proto and generate.sh)."""
