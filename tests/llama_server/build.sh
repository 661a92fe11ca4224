#!/usr/bin/env bash
# Build llama.cpp's llama-server, CPU only, from the llama.cpp sources inside the llama-cpp-python sdist
# on PyPI, into a git-ignored cache (.cache/llama-server/). A finished build is reused; prints the binary's path.
# About 6 minutes on 2 cores. Needs cmake and a C++17 compiler; nothing is fetched but the sdist.
set -euo pipefail
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
cache="$root/.cache/llama-server/$version"
binary="$cache/build/bin/llama-server"
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
for tool in cmake make cc c++; do
    command -v "$tool" >/dev/null || { echo "llama-server build needs $tool on PATH" >&2; exit 2; }
done
python="${PYTHON:-python3}"
mkdir -p "$cache"
sdist="$cache/llama_cpp_python-$version.tar.gz"
if [[ ! -f "$sdist" ]]; then
    "$python" -m pip download -q --no-binary :all: --no-deps --dest "$cache" "llama-cpp-python==$version" >&2
fi
rm -rf "$cache/src"
mkdir -p "$cache/src"
tar -xzf "$sdist" -C "$cache/src" --strip-components=3 "llama_cpp_python-$version/vendor/llama.cpp"
# The web UI is off both ways (no npm build, no prebuilt download): the server embeds no assets.
cmake -S "$cache/src" -B "$cache/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF -DGGML_OPENMP=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF >&2
cmake --build "$cache/build" --target llama-server -j "${BUILD_JOBS:-2}" >&2
"$binary" --version >&2
echo "$binary"
