#!/bin/sh
# Regenerates api_pb2.py and api_pb2_grpc.py from api.proto. grpcio-tools is needed here only, at dev time:
#   python -m venv /tmp/grpcgen && /tmp/grpcgen/bin/pip install grpcio-tools
#   PYTHON=/tmp/grpcgen/bin/python controlplane/gpu_agent/podresources/generate.sh
# Run from anywhere; the stubs import each other by their package path, so protoc runs from the repo root.
set -eu
cd "$(dirname "$0")/../../.."
dir=controlplane/gpu_agent/podresources
"${PYTHON:-python}" -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. "$dir/api.proto"
version=$("${PYTHON:-python}" -c 'import grpc_tools, importlib.metadata as m; print(m.version("grpcio-tools"))')
for f in "$dir/api_pb2.py" "$dir/api_pb2_grpc.py"; do
  { printf '# Generated from api.proto by grpcio-tools %s (%s/generate.sh). Do not edit.\n' "$version" "$dir"
    cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
done
