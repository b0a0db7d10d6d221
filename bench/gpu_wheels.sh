#!/usr/bin/env bash
# Download the wheels bench/gpu_check.sh carries to the GPU image (Python 3.12, x86-64; it has torch,
# transformers and torchvision but not pydantic) into .whl/ (git-ignored locally), then run e.g.
#   run(command="OUT=$OUT WHEELS=.whl WORK=/tmp/gc SKIP_CORRECTNESS=1 bash bench/gpu_check.sh", carry=[".whl"])
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${DEST:-.whl}
grep -qxF "/$DEST/" .git/info/exclude 2>/dev/null || echo "/$DEST/" >>.git/info/exclude
"${PIP:-.venv/bin/pip}" download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 --no-deps -d "$DEST" \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
ls "$DEST"
