#pragma once
/// @file intrinsics.hpp
/// <immintrin.h> for bnn's SIMD kernels and for Eigen (kernels/gemm.hpp includes this first), on
/// x86 only (BNN_X86, isa.hpp); elsewhere it includes nothing of its own.
///
/// GCC 12's AVX-512 headers implement many intrinsics with an undefined pass-through operand
/// (`__m512 __Y = __Y;` in _mm512_undefined_ps) and, once that is inlined, report it under
/// -Wmaybe-uninitialized from inside the header. bnn's own kernels avoid those forms (see
/// sgemm_avx512.hpp), but Eigen's AVX-512 GEMM, compiled when the build targets AVX-512
/// (-march=native on such a CPU), uses them. The warning is therefore silenced for the lines of
/// the intrinsics headers only: GCC judges a warning by the pragma state at its location, so
/// code outside these headers keeps the warning. GCC 13 no longer reports it.
#include "bnn/kernels/isa.hpp"

#if BNN_X86
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif
