#pragma once
/// @file isa.hpp
/// Run-time choice of the instruction set the SIMD kernels use.
///
/// Every x86 SIMD kernel is compiled with `__attribute__((target(...)))`, so a build without any
/// -march flag still contains the AVX2 and AVX-512 code; which one runs is decided here from
/// CPUID. On aarch64 NEON is the baseline (every ARMv8-A core has it) and no x86 code is compiled:
/// every x86 kernel and every call of one sits inside `#if BNN_X86`. The environment variable
/// BNN_ISA=scalar|avx2|avx2_vnni|avx512|avx512_vpopcntdq|neon|neon_dotprod forces a path (an error if the CPU lacks it),
/// and set_isa() / IsaGuard let tests and benchmarks run each path in turn.
#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "bnn/core/error.hpp"

#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

/// 1 when compiling for x86 (the AVX2 and AVX-512 kernels exist), else 0: the one guard of all
/// x86-only code, so that no x86 header or target attribute is reached on other architectures.
#if defined(__x86_64__) || defined(__i386__)
#define BNN_X86 1
#include <cpuid.h>
#else
#define BNN_X86 0
#endif

namespace bnn::kernels {

/// The kernel paths. On x86 a CPU that has a path has every one before it in kIsas, except
/// avx2_vnni: AVX2 CPUs with AVX-VNNI (the VEX-encoded vpdpbusd and vpdpwssd: Alder Lake and later
/// Intel cores) run their integer dot products 256 bits wide on it, and AVX-512 CPUs that lack it
/// (Skylake-X, Ice Lake, Zen 4) skip it; the last path available is still the fastest.
/// AVX-512 without VPOPCNTDQ (Skylake-X, Cascade Lake) is a path of its own: its float kernels use
/// AVX-512 and its popcount kernels the AVX2 code. avx512_vpopcntdq also takes AVX512_VNNI, which
/// every CPU with VPOPCNTDQ and AVX-512BW has (Ice Lake, Sapphire Rapids, Zen 4 and 5), so that
/// both integer dot products of AVX-512 run on such a CPU: vpdpwssd there, vpmaddwd + vpaddd on
/// avx512. NEON is aarch64's; neon_dotprod adds ARMv8.2's SDOT (Cortex-A55, A76 and later,
/// Neoverse N1). Code never compares paths by order: the has_*() predicates below say which
/// kernels a path uses. The numbers are stable (benchmarks pass paths as integers).
enum class Isa { scalar = 0, avx2 = 1, avx512 = 2, avx512_vpopcntdq = 3, neon = 4, avx2_vnni = 5, neon_dotprod = 6 };

/// Every path; those of one architecture slowest first.
inline constexpr Isa kIsas[] = {Isa::scalar, Isa::avx2,  Isa::avx2_vnni,   Isa::avx512, Isa::avx512_vpopcntdq,
                                Isa::neon,   Isa::neon_dotprod};

/// "scalar", "avx2", "avx2_vnni", "avx512", "avx512_vpopcntdq", "neon" or "neon_dotprod" (what
/// BNN_ISA takes).
inline const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::scalar: return "scalar";
        case Isa::avx2: return "avx2";
        case Isa::avx2_vnni: return "avx2_vnni";
        case Isa::avx512: return "avx512";
        case Isa::avx512_vpopcntdq: return "avx512_vpopcntdq";
        case Isa::neon: return "neon";
        case Isa::neon_dotprod: return "neon_dotprod";
    }
    return "unknown";
}

/// True when the path uses the x86 AVX2/FMA kernels (every x86 vector path has them).
inline bool has_avx2(Isa isa) {
    return isa == Isa::avx2 || isa == Isa::avx2_vnni || isa == Isa::avx512 || isa == Isa::avx512_vpopcntdq;
}

/// True when the path uses the AVX-512 float and byte instructions (F, BW, DQ, VL).
inline bool has_avx512(Isa isa) { return isa == Isa::avx512 || isa == Isa::avx512_vpopcntdq; }

/// True when the path's widest kernels are the AVX2 ones (256 bits).
inline bool avx2_is_widest(Isa isa) { return has_avx2(isa) && !has_avx512(isa); }

/// True when the path uses AVX512_VNNI (vpdpwssd, vpdpbusd on zmm) for its integer dot products.
inline bool has_avx512_vnni(Isa isa) { return isa == Isa::avx512_vpopcntdq; }

/// True when the path uses AVX-VNNI (vpdpwssd, vpdpbusd on ymm) for its integer dot products.
inline bool has_avx_vnni(Isa isa) { return isa == Isa::avx2_vnni; }

/// True when the path uses the aarch64 NEON kernels.
inline bool has_neon(Isa isa) { return isa == Isa::neon || isa == Isa::neon_dotprod; }

/// True when the path uses ARMv8.2's SDOT for its integer dot products.
inline bool has_neon_dotprod(Isa isa) { return isa == Isa::neon_dotprod; }

namespace detail {
#if BNN_X86
/// AVX-VNNI: CPUID leaf 7, subleaf 1, EAX bit 4 (read directly: clang 14's __builtin_cpu_supports
/// does not know the name).
inline bool cpu_has_avx_vnni() {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid_count(7, 1, &a, &b, &c, &d) && ((a >> 4) & 1u) != 0;
}
#endif
}  // namespace detail

/// True when this CPU can run the given path. AVX2 also needs FMA; avx2_vnni adds AVX-VNNI;
/// AVX-512 means F, BW, DQ and VL; avx512_vpopcntdq adds the 64-bit lane popcount and VNNI; NEON
/// is part of every aarch64 CPU; neon_dotprod needs the kernel to report SDOT (Linux's HWCAP).
inline bool isa_supported(Isa isa) {
    switch (isa) {
        case Isa::scalar: return true;
#if BNN_X86
        case Isa::avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
        case Isa::avx2_vnni: return isa_supported(Isa::avx2) && detail::cpu_has_avx_vnni();
        case Isa::avx512:
            return isa_supported(Isa::avx2) && __builtin_cpu_supports("avx512f") &&
                   __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vl");
        case Isa::avx512_vpopcntdq:
            return isa_supported(Isa::avx512) && __builtin_cpu_supports("avx512vpopcntdq") &&
                   __builtin_cpu_supports("avx512vnni");
#elif defined(__aarch64__)
        case Isa::neon: return true;
        case Isa::neon_dotprod:
#if defined(__linux__)
            return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
            return false;
#endif
#endif
        default: return false;
    }
}

/// Every path this CPU can run, slowest first (scalar is always there).
inline std::vector<Isa> available_isas() {
    std::vector<Isa> out;
    for (Isa isa : kIsas)
        if (isa_supported(isa)) out.push_back(isa);
    return out;
}

/// The fastest path this CPU can run.
inline Isa best_isa() { return available_isas().back(); }

/// Parses a name isa_name() gives; anything else raises bnn::Error.
inline Isa parse_isa(std::string_view name) {
    for (Isa isa : kIsas)
        if (name == isa_name(isa)) return isa;
    ::bnn::fail("parse_isa: expected scalar, avx2, avx2_vnni, avx512, avx512_vpopcntdq, neon or neon_dotprod, got \"", std::string(name), "\"");
}

namespace detail {
inline void require_supported(Isa isa, const char* who) {
    BNN_CHECK(isa_supported(isa), who, ": the ", isa_name(isa), " path is not available on this CPU (available: ",
              [] {
                  std::string s;
                  for (Isa i : available_isas()) s += (s.empty() ? "" : ", ") + std::string(isa_name(i));
                  return s;
              }(),
              ")");
}

/// The path chosen once per process: BNN_ISA if set, else the fastest.
inline Isa default_isa() {
    static const Isa chosen = [] {
        const char* env = std::getenv("BNN_ISA");
        if (!env || !*env) return best_isa();
        Isa isa = parse_isa(env);
        require_supported(isa, "BNN_ISA");
        return isa;
    }();
    return chosen;
}

/// -1: no override; otherwise the Isa value set by set_isa().
inline std::atomic<int>& isa_override() {
    static std::atomic<int> value{-1};
    return value;
}
}  // namespace detail

/// The path the SIMD kernels use now: set_isa() if called, else BNN_ISA, else the fastest.
inline Isa active_isa() {
    int forced = detail::isa_override().load(std::memory_order_relaxed);
    return forced >= 0 ? static_cast<Isa>(forced) : detail::default_isa();
}

/// Forces a path for the whole process (tests, benchmarks); bnn::Error if the CPU lacks it.
inline void set_isa(Isa isa) {
    detail::require_supported(isa, "set_isa");
    detail::isa_override().store(static_cast<int>(isa), std::memory_order_relaxed);
}

/// Returns to the default choice (BNN_ISA or the fastest).
inline void reset_isa() { detail::isa_override().store(-1, std::memory_order_relaxed); }

/// Forces a path for the lifetime of the guard, then restores the previous choice.
class IsaGuard {
public:
    explicit IsaGuard(Isa isa) : previous_(detail::isa_override().load()) { set_isa(isa); }
    ~IsaGuard() { detail::isa_override().store(previous_); }
    IsaGuard(const IsaGuard&) = delete;
    IsaGuard& operator=(const IsaGuard&) = delete;

private:
    int previous_;
};

}  // namespace bnn::kernels
