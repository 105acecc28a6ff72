# Cross build for 64-bit ARM Linux with Debian's g++-aarch64-linux-gnu (docs/arm.md):
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# Libraries come from Debian's arm64 multiarch packages (zlib1g-dev:arm64, libstb-dev:arm64, in
# /usr/lib/aarch64-linux-gnu); the header-only dependencies (Eigen, xsimd, nlohmann_json, CLI11,
# Catch2) are the host's, since their headers and CMake packages do not depend on the architecture.
# ctest runs the test programs under qemu-user with the cross sysroot given explicitly, so it works
# without binfmt. Its library path puts the sysroot's libc before Debian's multiarch arm64 libc
# (libc6:arm64, which zlib1g-dev:arm64 brings into /lib/aarch64-linux-gnu, searched first): the
# sysroot's loader with another build's libc hangs in the first pthread_create.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

# Programs are the host's; libraries only the target's (never an x86 one); headers and CMake
# packages from either.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# The multiarch libraries live outside the cross sysroot: /usr/lib/aarch64-linux-gnu.
list(APPEND CMAKE_FIND_ROOT_PATH /)

set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)
