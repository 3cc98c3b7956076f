#!/usr/bin/env bash
# Sets up a fresh Debian machine for chanasc: system packages, a release build, and the Python
# test tooling (a venv with onnx, onnxruntime and numpy, and the ONNX node tests generated
# from it). Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
  echo "setup: cargo is not installed; install Rust (1.87 or newer) first" >&2
  exit 1
fi

# System packages (Debian): a C toolchain, LLVM 19 for the native backend, the aarch64
# cross toolchain and qemu to run aarch64 builds, Vulkan on the CPU, Python's venv module,
# and datasets.
need=()
command -v cc >/dev/null || need+=(build-essential)
[ -x /usr/lib/llvm-19/bin/llvm-config ] || need+=(llvm-19-dev libpolly-19-dev libzstd-dev zlib1g-dev)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v python3 >/dev/null || need+=(python3)
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
# sshd, for the test of the tuner's remote (SSH) measurer against a server on loopback.
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
# Lavapipe (Mesa's CPU Vulkan) and the Vulkan loader: the wgpu backend's tests run on it
# when the machine has no GPU.
[ -f /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || [ -f /usr/share/vulkan/icd.d/lvp_icd.aarch64.json ] || need+=(mesa-vulkan-drivers)
ldconfig -p 2>/dev/null | grep -q libvulkan.so.1 || need+=(libvulkan1)
# Fashion-MNIST (IDX, gzip) in /usr/share/datasets/fashion-mnist: `chanasc train`'s default task.
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi

cargo build --release --locked

# Test tooling: the ONNX node tests are generated from the onnx package's own test cases.
if [ "${CHANASC_SKIP_PYTHON:-0}" != 1 ]; then
  if ! .venv/bin/python -c "import onnx, onnxruntime, numpy" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q --disable-pip-version-check onnx==1.23.2 onnxruntime numpy
  fi
  gen=../shared/tools/gen_onnx_node_tests.py
  if [ ! -d target/onnx-node-tests/node ] && [ -f $gen ]; then
    .venv/bin/python $gen target/onnx-node-tests.tmp >/dev/null 2>&1
    rm -rf target/onnx-node-tests && mv target/onnx-node-tests.tmp target/onnx-node-tests
  fi
fi
echo "setup: done (binary: target/release/chanasc)"
