#!/usr/bin/env bash
# Installs the Debian packages bnn needs, only when some are missing (apt-get update runs once,
# then one apt-get install). With --torch it also installs python3-torch, torchvision and onnx,
# for the PyTorch twin (examples/pytorch), its equivalence tests (ctest label torch), the ONNX
# converter's tests (label onnx) and the comparison scripts in benchmarks/, and an optimised BLAS
# (without libopenblas0-pthread, Debian's torch runs its GEMM fallbacks on the reference BLAS).
# The C++ library never uses them. With --aarch64
# it also installs the cross compiler, qemu-user and the arm64 libraries bnn links (Debian
# multiarch: arm64 is added to dpkg's architectures first), for scripts/test_aarch64.sh.
set -euo pipefail

packages=(g++ cmake ninja-build libeigen3-dev libxsimd-dev xtl-dev catch2 libstb-dev
          nlohmann-json3-dev libbenchmark-dev libcli11-dev zlib1g-dev dataset-fashion-mnist)
# clang with libFuzzer and the OpenMP runtime it links: the fuzz targets CI runs (scripts/sanitize.sh).
packages+=(clang libclang-rt-14-dev libomp-dev)
# Open MPI: data-parallel training (bnn::mpi, include/bnn/dist) and its tests (ctest label mpi).
packages+=(libopenmpi-dev openmpi-bin)
# The Python module (python/, docs/python.md) for /usr/bin/python3 and its tests (ctest label python).
packages+=(python3-dev python3-numpy python3-pybind11 python3-pytest)
for option in "$@"; do
  case $option in
    --torch) packages+=(python3-torch python3-torchvision python3-onnx libopenblas0-pthread) ;;
    --aarch64) packages+=(g++-aarch64-linux-gnu qemu-user zlib1g-dev:arm64 libstb-dev:arm64 libxsimd-dev:arm64) ;;
    *) echo "setup: unknown option $option (expected --torch or --aarch64)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages are installed"
  exit 0
fi
echo "setup: installing ${missing[*]}"
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
if [[ " ${missing[*]}" == *:arm64* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
