#!/bin/bash
# llama-cpp-python 0.3.36 (trimmed sdist) built with CUDA for sm_90; libraries land in its llama_cpp/lib.
cd /tmp/ll/llama_cpp_python-0.3.36 || exit 9
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DSKBUILD_PLATLIB_DIR=/tmp/llplat && cmake --build build -j 16 && cmake --install build
