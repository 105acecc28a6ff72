// Safetensors files, checkpoints, atomic writes and image loading.
#include <stb/stb_image_write.h>
#include <sys/resource.h>
#include <zlib.h>

#include <catch2/catch.hpp>

#include "same_bits.hpp"
#include "temp_dir.hpp"
#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "bnn/core/file.hpp"
#include "bnn/io/atomic_file.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/deploy.hpp"
#include "bnn/io/image.hpp"
#include "bnn/io/safetensors.hpp"
#include "bnn/nn/batch_norm.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/optim/sgd.hpp"

using namespace bnn;
namespace fs = std::filesystem;

namespace {

using test::bits_equal;
using test::TempDir;
using test::write_bytes;

std::vector<uint8_t> read_bytes(const std::string& path) { return read_file(path); }

/// A safetensors file from a hand-written header (padded here) and raw data bytes.
std::vector<uint8_t> hand_file(std::string header, const std::vector<uint8_t>& data) {
    header.append((8 - header.size() % 8) % 8, ' ');
    std::vector<uint8_t> out(8);
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
    out.insert(out.end(), header.begin(), header.end());
    out.insert(out.end(), data.begin(), data.end());
    return out;
}

/// Linear -> BatchNorm (with running-stat buffers) -> Linear.
std::shared_ptr<nn::Sequential> small_net(int64_t hidden = 4) {
    auto net = std::make_shared<nn::Sequential>();
    net->push_back(std::make_shared<nn::Linear>(3, hidden));
    net->push_back(std::make_shared<nn::BatchNorm2d>(hidden));
    net->push_back(std::make_shared<nn::Linear>(hidden, 2));
    return net;
}

/// Gives every parameter and buffer distinct random values.
void randomise(nn::Module& m, uint64_t seed) {
    Rng rng(seed);
    for (auto& [name, p] : m.named_parameters())
        for (auto& v : p.value()) v = rng.normal();
    for (auto& [name, b] : m.named_buffers())
        for (auto& v : b) v = rng.uniform(0.5f, 2.f);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// safetensors

TEST_CASE("safetensors round trip keeps every dtype, shape and bit", "[safetensors]") {
    TempDir dir;
    Rng rng(7);
    auto f = Tensor<float>::randn({2, 3}, rng);
    f[0] = -0.f;
    f[1] = std::numeric_limits<float>::infinity();
    auto i = Tensor<int32_t>::from_vector({4}, {-2147483647 - 1, -1, 0, 2147483647});
    auto u = Tensor<uint8_t>::from_vector({2, 1, 2}, {0, 1, 254, 255});
    auto w = Tensor<uint64_t>::from_vector({}, {0xfedcba9876543210ull});  // a rank-0 scalar
    auto e = Tensor<float>(Shape{0, 3});                                   // no elements at all
    io::NamedTensors tensors{{"layer.f", f}, {"i", i}, {"u", u}, {"w", w}, {"empty", e}};
    io::Metadata meta{{"stage", "2"}, {"note", "a \"quoted\" value"}};
    const std::string path = dir.file("all.safetensors");
    io::save_safetensors(path, tensors, meta);

    // The data starts 8-byte aligned.
    auto bytes = read_bytes(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    REQUIRE((8 + n) % 8 == 0);

    io::SafetensorsFile file = io::load_safetensors(path);
    REQUIRE(file.metadata == meta);
    REQUIRE(file.tensors.size() == 5);
    REQUIRE(bits_equal(file.get<float>("layer.f"), f));
    REQUIRE(bits_equal(file.get<int32_t>("i"), i));
    REQUIRE(bits_equal(file.get<uint8_t>("u"), u));
    REQUIRE(bits_equal(file.get<uint64_t>("w"), w));
    REQUIRE(file.get<uint64_t>("w").shape().rank() == 0);
    REQUIRE(file.get<float>("empty").shape() == Shape{0, 3});
    REQUIRE_THROWS_WITH(file.get<int32_t>("u"), Catch::Contains("U8") && Catch::Contains("I32"));
    REQUIRE_THROWS_WITH(file.get<float>("nope"), Catch::Contains("nope"));
}

TEST_CASE("safetensors bytes match the format written out by hand", "[safetensors]") {
    // Format: u64 little-endian header length, JSON header padded with spaces to a multiple of
    // 8, then the raw little-endian data of each tensor at its data_offsets.
    io::NamedTensors tensors{{"a", Tensor<float>::from_vector({2}, {1.0f, -2.0f})},
                             {"b", Tensor<uint8_t>::from_vector({3}, {1, 2, 3})}};
    const std::vector<uint8_t> got = io::serialize_safetensors(tensors, {{"k", "v"}});

    const std::string json =
        R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
    REQUIRE(json.size() == 132);  // padded with 4 spaces to 136 = 0x88
    const std::string bytes = std::string("\x88\0\0\0\0\0\0\0", 8)  // header length 136, little-endian
                              + json + "    "                                // padding to a multiple of 8
                              + std::string("\x00\x00\x80\x3f", 4)         // 1.0f
                              + std::string("\x00\x00\x00\xc0", 4)         // -2.0f
                              + std::string("\x01\x02\x03", 3);             // the U8 tensor
    const std::vector<uint8_t> expected(bytes.begin(), bytes.end());
    REQUIRE(got == expected);

    // And the hand-made bytes read back.
    auto file = io::parse_safetensors(expected.data(), expected.size(), "hand");
    REQUIRE(file.get<float>("a").to_vector() == std::vector<float>{1.0f, -2.0f});
    REQUIRE(file.get<uint8_t>("b").to_vector() == std::vector<uint8_t>{1, 2, 3});
    REQUIRE(file.metadata.at("k") == "v");
}

TEST_CASE("safetensors reader accepts files laid out in another order, as other writers do", "[safetensors]") {
    // Python's writer sorts tensors; here "z" comes first in the data although last in the JSON.
    auto bytes = hand_file(R"({"a":{"dtype":"I32","shape":[1],"data_offsets":[1,5]},"z":{"dtype":"U8","shape":[],"data_offsets":[0,1]}})",
                           {9, 0x2a, 0, 0, 0});
    auto file = io::parse_safetensors(bytes.data(), bytes.size(), "reordered");
    REQUIRE(file.get<int32_t>("a")[0] == 42);
    REQUIRE(file.get<uint8_t>("z")[0] == 9);
}

TEST_CASE("safetensors reader takes PyTorch's dtypes: I64 as int64, F16 and BF16 widened exactly", "[safetensors]") {
    // F16: 1, -2.5, 2^-24 (the smallest subnormal), +inf; BF16: 1, -0.5; I64: 7, -1.
    const std::vector<uint8_t> data{0x00, 0x3c, 0x00, 0xc1, 0x01, 0x00, 0x00, 0x7c,  // F16 [4]
                                    0x80, 0x3f, 0x00, 0xbf,                          // BF16 [2]
                                    7, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    auto bytes = hand_file(R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]},)"
                           R"("n":{"dtype":"I64","shape":[2],"data_offsets":[12,28]}})",
                           data);
    auto file = io::parse_safetensors(bytes.data(), bytes.size(), "torch");
    const Tensor<float> h = file.get<float>("h"), b = file.get<float>("b");
    REQUIRE(h[0] == 1.f);
    REQUIRE(h[1] == -2.5f);
    REQUIRE(h[2] == 0x1p-24f);
    REQUIRE(std::isinf(h[3]));
    REQUIRE(b[0] == 1.f);
    REQUIRE(b[1] == -0.5f);
    REQUIRE(file.get<int64_t>("n")[0] == 7);
    REQUIRE(file.get<int64_t>("n")[1] == -1);
    REQUIRE(file.widened.at("h") == "F16");
    REQUIRE(file.widened.at("b") == "BF16");
    // Every half value converts as the standard says: compare against a reference built from
    // the definition (sign, exponent, mantissa) for all 65536 bit patterns but NaNs.
    for (uint32_t v = 0; v < 65536; ++v) {
        const uint32_t e = (v >> 10) & 0x1f, m = v & 0x3ff;
        if (e == 0x1f && m) {
            REQUIRE(std::isnan(io::detail::half_to_float(static_cast<uint16_t>(v))));
            continue;
        }
        const double mag = e == 0x1f ? INFINITY : e ? std::ldexp(1.0 + m / 1024.0, int(e) - 15) : std::ldexp(m / 1024.0, -14);
        const double ref = (v & 0x8000) ? -mag : mag;
        REQUIRE(io::detail::half_to_float(static_cast<uint16_t>(v)) == static_cast<float>(ref));
    }
    // A wrong byte count for a half tensor, and a dtype bnn does not read, are errors.
    auto short_half = hand_file(R"({"h":{"dtype":"F16","shape":[3],"data_offsets":[0,4]}})", {0, 0, 0, 0});
    REQUIRE_THROWS_WITH(io::parse_safetensors(short_half.data(), short_half.size(), "x"), Catch::Contains("needs 6 bytes"));
    auto f64 = hand_file(R"({"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", std::vector<uint8_t>(8, 0));
    REQUIRE_THROWS_WITH(io::parse_safetensors(f64.data(), f64.size(), "x"), Catch::Contains("F64"));
}

TEST_CASE("load_module notes PyTorch's num_batches_tracked and half-precision tensors instead of failing", "[checkpoint]") {
    nn::BatchNorm2d bn(2);
    // weight F16 [1, 2], bias BF16 [0.5, -1], running stats F32, num_batches_tracked I64 (a scalar).
    std::vector<uint8_t> data{0x00, 0x3c, 0x00, 0x40, 0x00, 0x3f, 0x80, 0xbf};
    for (float v : {0.25f, -0.75f, 2.f, 3.f}) {
        uint8_t raw[4];
        std::memcpy(raw, &v, 4);
        data.insert(data.end(), raw, raw + 4);
    }
    data.insert(data.end(), {5, 0, 0, 0, 0, 0, 0, 0});
    auto bytes = hand_file(R"({"weight":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                           R"("bias":{"dtype":"BF16","shape":[2],"data_offsets":[4,8]},)"
                           R"("running_mean":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
                           R"("running_var":{"dtype":"F32","shape":[2],"data_offsets":[16,24]},)"
                           R"("num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[24,32]}})",
                           data);
    const io::LoadReport report = io::load_module(io::parse_safetensors(bytes.data(), bytes.size(), "bn"), bn);
    REQUIRE(report.complete());
    REQUIRE(report.ignored == std::vector<std::string>{"num_batches_tracked"});
    REQUIRE(report.widened == std::vector<std::string>{"weight", "bias"});
    REQUIRE(report.str().find("ignored") != std::string::npos);
    REQUIRE(bn.weight.value()[1] == 2.f);
    REQUIRE(bn.bias.value()[1] == -1.f);
    REQUIRE(bn.running_var[1] == 3.f);
}

namespace {
/// A conv (with bias) and a BN, which another framework calls "conv" and "bn".
struct AliasedNet : nn::Sequential {
    AliasedNet() {
        conv = push_back(std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 2, .kernel_size = 2, .bias = true}));
        bn = push_back(std::make_shared<nn::BatchNorm2d>(2));
    }
    std::shared_ptr<nn::Conv2d> conv;
    std::shared_ptr<nn::BatchNorm2d> bn;
    std::vector<std::pair<std::string, std::string>> name_aliases() const override {
        return {{"conv.", "0."}, {"bn.", "1."}};
    }
};
struct Outer : nn::Module {
    Outer() { body = register_module("body", std::make_shared<AliasedNet>()); }
    Variable forward(const Variable& x) override { return body->forward(x); }
    std::shared_ptr<AliasedNet> body;
};

/// What PyTorch's `safetensors` package writes for Outer's state_dict under the other names:
/// OIHW conv weight [2,3,2,2] holding 1000*o + 100*i + 10*y + x, int64 num_batches_tracked.
io::NamedTensors pytorch_state(const std::string& prefix) {
    Tensor<float> w(Shape{2, 3, 2, 2});
    for (int o = 0; o < 2; ++o)
        for (int i = 0; i < 3; ++i)
            for (int y = 0; y < 2; ++y)
                for (int x = 0; x < 2; ++x) w[((o * 3 + i) * 2 + y) * 2 + x] = 1000.f * o + 100.f * i + 10.f * y + x;
    auto vec = [](std::vector<float> v) { return Tensor<float>::from_vector(Shape{2}, v); };
    return {{prefix + "conv.weight", w},
            {prefix + "conv.bias", vec({0.5f, -0.5f})},
            {prefix + "bn.weight", vec({1.5f, 2.5f})},
            {prefix + "bn.bias", vec({0.1f, 0.2f})},
            {prefix + "bn.running_mean", vec({-1.f, 1.f})},
            {prefix + "bn.running_var", vec({3.f, 4.f})},
            {prefix + "bn.num_batches_tracked", Tensor<int64_t>::from_vector(Shape{}, {7})}};
}
}  // namespace

TEST_CASE("load_module reads a PyTorch state_dict: OIHW weights converted, other names through name_aliases", "[checkpoint]") {
    TempDir dir;
    const std::string path = dir.file("pt.safetensors");
    io::save_safetensors(path, pytorch_state("body."), {{"format", "pt"}});
    Outer net;
    const io::LoadReport report = io::load_module(path, net);
    REQUIRE(report.complete());
    REQUIRE(report.renamed.size() == 6);
    REQUIRE(report.ignored == std::vector<std::string>{"body.bn.num_batches_tracked"});
    const Tensor<float>& w = net.body->conv->weight.value();  // OHWI [2,2,2,3]
    REQUIRE(w.shape() == Shape{2, 2, 2, 3});
    for (int o = 0; o < 2; ++o)
        for (int y = 0; y < 2; ++y)
            for (int x = 0; x < 2; ++x)
                for (int i = 0; i < 3; ++i) REQUIRE(w[((o * 2 + y) * 2 + x) * 3 + i] == 1000.f * o + 100.f * i + 10.f * y + x);
    REQUIRE(net.body->conv->bias.value()[1] == -0.5f);
    REQUIRE(net.body->bn->running_var[1] == 4.f);

    SECTION("the same tensors without the format mark are bnn's layout: the OIHW weight is a shape mismatch") {
        io::save_safetensors(path, pytorch_state("body."));
        REQUIRE_THROWS_WITH(io::load_module(path, net), Catch::Contains("body.0.weight") && Catch::Contains("[2, 3, 2, 2]") &&
                                                            Catch::Contains("format: pt"));
    }
    SECTION("a weight of the wrong dtype, the wrong shape or truncated data is a bnn::Error naming it") {
        auto state = pytorch_state("body.");
        state[1].second = Tensor<int64_t>::from_vector(Shape{2}, {1, 2});
        io::save_safetensors(path, state, {{"format", "pt"}});
        REQUIRE_THROWS_WITH(io::load_module(path, net), Catch::Contains("body.0.bias") && Catch::Contains("I64"));
        state = pytorch_state("body.");
        state[0].second = Tensor<float>(Shape{2, 3, 3, 3});
        io::save_safetensors(path, state, {{"format", "pt"}});
        REQUIRE_THROWS_WITH(io::load_module(path, net), Catch::Contains("body.0.weight") && Catch::Contains("[2, 3, 3, 3]"));
        io::save_safetensors(path, pytorch_state("body."), {{"format", "pt"}});
        std::vector<uint8_t> bytes = read_bytes(path);
        bytes.resize(bytes.size() - 3);
        write_bytes(path, bytes);
        REQUIRE_THROWS_AS(io::load_module(path, net), bnn::Error);
    }
}

TEST_CASE("safetensors reader rejects every kind of corruption with bnn::Error", "[safetensors]") {
    TempDir dir;
    const std::string path = dir.file("bad.safetensors");
    const std::vector<uint8_t> data8(8, 0);
    auto expect_error = [&](const std::vector<uint8_t>& bytes, const std::string& reason) {
        write_bytes(path, bytes);
        INFO("case: " << reason);
        REQUIRE_THROWS_AS(io::load_safetensors(path), Error);
        REQUIRE_THROWS_WITH(io::load_safetensors(path), Catch::Contains(path) && Catch::Contains(reason));
    };
    const std::string ok_entry = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

    expect_error({1, 2, 3}, "too short");
    {
        auto b = hand_file("{" + ok_entry + "}", data8);
        b[0] = 0xff, b[1] = 0xff;  // header length far past the end
        expect_error(b, "runs past the end");
    }
    {
        std::vector<uint8_t> b(16, 0);
        for (int i = 0; i < 8; ++i) b[i] = 0xff;  // 2^64 - 1: must not overflow into a small number
        expect_error(b, "runs past the end");
    }
    expect_error(hand_file(R"({"t":{"dtype":"F32",)", data8), "not valid JSON");
    expect_error(hand_file(R"([1, 2])", data8), "JSON object");
    expect_error(hand_file(R"({"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", data8), "F64");
    expect_error(hand_file(R"({"t":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", data8), "dtype");
    expect_error(hand_file(R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", data8), "shape");
    expect_error(hand_file(R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data8), "non-negative");
    expect_error(hand_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", data8), "data_offsets");
    expect_error(hand_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", data8), "beyond");
    expect_error(hand_file(R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data8), "begin > end");
    expect_error(hand_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data8), "needs 12 bytes");
    expect_error(hand_file(R"({"t":{"dtype":"U64","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", data8),
                 "too large");
    expect_error(hand_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                           data8),
                 "overlaps");
    expect_error(hand_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data8), "gap");
    expect_error(hand_file("{" + ok_entry + "}", std::vector<uint8_t>(12, 0)), "cover 8 data bytes");
    expect_error(hand_file("{" + ok_entry + "}", std::vector<uint8_t>(5, 0)), "beyond");  // truncated data
    expect_error(hand_file(R"({"__metadata__":{"epoch":3},)" + ok_entry + "}", data8), "not a string");
    expect_error(hand_file(R"({"__metadata__":[1],)" + ok_entry + "}", data8), "__metadata__");

    // A missing file names itself too.
    REQUIRE_THROWS_WITH(io::load_safetensors(dir.file("absent.safetensors")), Catch::Contains("absent.safetensors"));
}

TEST_CASE("safetensors reader survives every truncation and byte flip of a valid file", "[safetensors]") {
    io::NamedTensors tensors{{"w", Tensor<float>::from_vector({2, 2}, {1, 2, 3, 4})},
                             {"n", Tensor<uint64_t>::from_vector({1}, {5})}};
    const auto good = io::serialize_safetensors(tensors, {{"m", "x"}});
    for (size_t len = 0; len < good.size(); ++len)
        REQUIRE_THROWS_AS(io::parse_safetensors(good.data(), len, "cut"), Error);
    // Flipping header bytes yields either another valid file or bnn::Error, never a crash.
    Rng rng(3);
    int errors = 0;
    for (int trial = 0; trial < 2000; ++trial) {
        auto b = good;
        const size_t pos = rng.below(b.size() - 12 - 8);  // anywhere in the length or JSON
        b[pos] ^= static_cast<uint8_t>(1u << rng.below(8));
        try {
            io::parse_safetensors(b.data(), b.size(), "flip");
        } catch (const Error&) {
            ++errors;
        }
    }
    REQUIRE(errors > 1000);
}

TEST_CASE("safetensors writer rejects bad names before touching the file", "[safetensors]") {
    TempDir dir;
    const auto t = Tensor<float>(Shape{1});
    REQUIRE_THROWS_WITH(io::save_safetensors(dir.file("x"), {{"a", t}, {"a", t}}), Catch::Contains("twice"));
    REQUIRE_THROWS_AS(io::save_safetensors(dir.file("x"), {{"__metadata__", t}}), Error);
    REQUIRE_THROWS_AS(io::save_safetensors(dir.file("x"), {{"u", Tensor<float>()}}), Error);
    REQUIRE(dir.entries() == 0);
}

// ---------------------------------------------------------------------------------------------
// atomic writes

TEST_CASE("atomic write leaves the old file intact when writing fails midway", "[atomic]") {
    TempDir dir;
    const std::string path = dir.file("ckpt.safetensors");
    io::NamedTensors v1{{"x", Tensor<float>::full({16}, 1.f)}};
    io::save_safetensors(path, v1);
    const auto old_bytes = read_bytes(path);

    SECTION("the producer throws after writing part of the file") {
        REQUIRE_THROWS_WITH(io::atomic_write_file(path,
                                                  [](io::FileSink& sink) {
                                                      sink.write("partial", 7);
                                                      throw Error("disk on fire");
                                                  }),
                            Catch::Contains("disk on fire"));
    }
    SECTION("the operating system refuses the write (file size limit) midway through the data") {
        // RLIMIT_FSIZE makes write() fail with EFBIG past 4 KiB, a real I/O failure in the
        // middle of a 64 KiB tensor. SIGXFSZ must be ignored so the process survives it.
        auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
        rlimit old_limit{};
        REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
        rlimit small = old_limit;
        small.rlim_cur = 4096;
        REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
        io::NamedTensors big{{"x", Tensor<float>::full({16384}, 2.f)}};
        bool threw = false;
        try {
            io::save_safetensors(path, big);
        } catch (const Error& e) {
            threw = true;
            CHECK_THAT(e.what(), Catch::Contains("after 4096 bytes"));
        }
        ::setrlimit(RLIMIT_FSIZE, &old_limit);
        std::signal(SIGXFSZ, old_handler);
        REQUIRE(threw);
    }
    SECTION("the target directory does not exist") {
        REQUIRE_THROWS_WITH(io::save_safetensors(dir.file("no/such/dir/ckpt.safetensors"), v1),
                            Catch::Contains("no/such/dir"));
    }
    REQUIRE(read_bytes(path) == old_bytes);
    REQUIRE(dir.entries() == 1);  // no temporary file left behind
}

TEST_CASE("atomic write replaces the file with the new contents", "[atomic]") {
    TempDir dir;
    const std::string path = dir.file("f.bin");
    io::atomic_write_file(path, std::vector<uint8_t>{1, 2, 3});
    io::atomic_write_file(path, std::vector<uint8_t>{4, 5});
    REQUIRE(read_bytes(path) == std::vector<uint8_t>{4, 5});
    REQUIRE(dir.entries() == 1);
}

// ---------------------------------------------------------------------------------------------
// checkpoints

TEST_CASE("checkpoint round trip restores parameters and buffers bit for bit", "[checkpoint]") {
    TempDir dir;
    const std::string path = dir.file("model.safetensors");
    auto a = small_net();
    randomise(*a, 1);
    io::save_checkpoint(path, *a, {{"stage", 2}, {"epoch", 17}, {"seed", 12345}, {"recipe", "real-to-bin"}});

    auto b = small_net();
    randomise(*b, 2);
    io::LoadReport report = io::load_module(path, *b);
    REQUIRE(report.complete());
    REQUIRE(report.loaded.size() == 8);  // 2 x (weight, bias) + BN weight, bias, running_mean, running_var
    auto pa = a->named_parameters(), pb = b->named_parameters();
    for (size_t k = 0; k < pa.size(); ++k) REQUIRE(bits_equal(pa[k].second.value(), pb[k].second.value()));
    auto ba = a->named_buffers(), bb = b->named_buffers();
    REQUIRE(ba.size() == 2);
    for (size_t k = 0; k < ba.size(); ++k) REQUIRE(bits_equal(ba[k].second, bb[k].second));

    // Loading wrote in place: the module's handles still point at the same storage.
    REQUIRE(b->named_parameters()[0].second.value().same_storage(pb[0].second.value()));

    // Same outputs, bit for bit, in eval mode.
    a->eval();
    b->eval();
    Rng rng(5);
    Variable x(Tensor<float>::randn({3, 3}, rng));
    NoGradGuard no_grad;
    REQUIRE(bits_equal(a->forward(x).value(), b->forward(x).value()));

    nlohmann::json meta = io::checkpoint_metadata(path);
    REQUIRE(meta["stage"] == 2);
    REQUIRE(meta["epoch"] == 17);
    REQUIRE(meta["seed"] == 12345);
    REQUIRE(meta["recipe"] == "real-to-bin");
    REQUIRE(io::load_safetensors(path).metadata.at("format") == io::kCheckpointFormat);
}

TEST_CASE("load report lists missing, unexpected and mismatched keys", "[checkpoint]") {
    TempDir dir;
    const std::string path = dir.file("stage1.safetensors");
    auto a = small_net(4);
    randomise(*a, 1);
    io::save_checkpoint(path, *a);

    // Another architecture: the hidden width differs (shape mismatches), a layer is missing
    // (unexpected keys) and a new one is added (missing keys).
    auto b = std::make_shared<nn::Sequential>();
    b->push_back(std::make_shared<nn::Linear>(3, 5));
    b->push_back(std::make_shared<nn::BatchNorm2d>(4));
    b->push_back(std::make_shared<nn::Linear>(4, 6, /*bias=*/false));
    b->push_back(std::make_shared<nn::Linear>(6, 2));
    randomise(*b, 9);
    const auto before = b->named_parameters()[0].second.value().clone();

    // Strict: throws, names every problem, writes nothing.
    try {
        io::load_module(path, *b);
        FAIL("strict load of a mismatched checkpoint did not throw");
    } catch (const Error& e) {
        const std::string msg = e.what();
        CHECK_THAT(msg, Catch::Contains(path));
        CHECK_THAT(msg, Catch::Contains("0.weight (module [5, 3], file [4, 3])"));
        CHECK_THAT(msg, Catch::Contains("3.weight") && Catch::Contains("3.bias"));
        CHECK_THAT(msg, Catch::Contains("2.bias"));
    }
    REQUIRE(bits_equal(b->named_parameters()[0].second.value(), before));
    auto running_mean = b->named_buffers()[0].second.clone();

    // Non-strict: loads what matches and reports the rest.
    io::LoadReport r = io::load_module(path, *b, {.strict = false});
    REQUIRE_FALSE(r.complete());
    std::vector<std::string> mismatched;
    for (auto& m : r.mismatched) mismatched.push_back(m.name);
    REQUIRE(mismatched == std::vector<std::string>{"0.weight", "0.bias", "2.weight"});
    REQUIRE(r.missing == std::vector<std::string>{"3.weight", "3.bias"});
    REQUIRE(r.unexpected == std::vector<std::string>{"2.bias"});
    REQUIRE(r.loaded == std::vector<std::string>{"1.weight", "1.bias", "1.running_mean", "1.running_var"});
    REQUIRE(bits_equal(b->named_parameters()[0].second.value(), before));  // mismatched: untouched
    REQUIRE(bits_equal(b->named_buffers()[0].second, a->named_buffers()[0].second));
    REQUIRE_FALSE(bits_equal(b->named_buffers()[0].second, running_mean));
    REQUIRE_THAT(r.str(), Catch::Contains("2 missing") && Catch::Contains("1 unexpected"));
}

TEST_CASE("checkpoint with optimiser state resumes the optimiser exactly", "[checkpoint]") {
    TempDir dir;
    const std::string path = dir.file("resume.safetensors");
    // Two identical runs; one is saved and restored into fresh objects after 3 steps.
    auto step = [](nn::Module& net, optim::Optimizer& opt, uint64_t seed) {
        Rng rng(seed);
        Variable x(Tensor<float>::randn({4, 3}, rng));
        opt.zero_grad();
        Variable y = net.forward(x);
        y.backward(Tensor<float>::randn(y.shape(), rng));
        opt.step();
    };
    for (int kind = 0; kind < 2; ++kind) {
        manual_seed(11);
        auto net = small_net();
        std::unique_ptr<optim::Optimizer> opt;
        if (kind == 0) opt = std::make_unique<optim::SGD>(net->parameters(), optim::SGDOptions{.lr = 0.1f, .momentum = 0.9f});
        else opt = std::make_unique<optim::Adam>(net->parameters(), optim::AdamOptions{.lr = 0.01f});
        for (uint64_t s = 0; s < 3; ++s) step(*net, *opt, s);
        io::save_checkpoint(path, *net, *opt, {{"epoch", 3}});

        manual_seed(99);  // different initial weights, on purpose
        auto net2 = small_net();
        std::unique_ptr<optim::Optimizer> opt2;
        if (kind == 0) opt2 = std::make_unique<optim::SGD>(net2->parameters(), optim::SGDOptions{.lr = 0.1f, .momentum = 0.9f});
        else opt2 = std::make_unique<optim::Adam>(net2->parameters(), optim::AdamOptions{.lr = 0.01f});
        auto file = io::load_safetensors(path);
        REQUIRE(io::load_module(file, *net2).complete());
        io::load_optimizer(file, *opt2);
        REQUIRE(opt2->step_count() == 3);
        REQUIRE_FALSE(opt2->state_tensors().empty());
        for (size_t k = 0; k < opt->state_tensors().size(); ++k)
            REQUIRE(bits_equal(opt->state_tensors()[k].second, opt2->state_tensors()[k].second));

        for (uint64_t s = 3; s < 5; ++s) {
            step(*net, *opt, s);
            step(*net2, *opt2, s);
        }
        auto p1 = net->named_parameters(), p2 = net2->named_parameters();
        for (size_t k = 0; k < p1.size(); ++k) REQUIRE(bits_equal(p1[k].second.value(), p2[k].second.value()));

        // The optimiser keys do not count as unexpected for the module...
        REQUIRE(io::load_module(file, *net2).unexpected.empty());
        // ...and a model-only checkpoint cannot restore an optimiser.
        io::save_checkpoint(dir.file("model_only.safetensors"), *net);
        REQUIRE_THROWS_WITH(io::load_optimizer(dir.file("model_only.safetensors"), *opt2),
                            Catch::Contains("no optimiser state"));
    }
    // State of another optimiser (SGD file into Adam) is rejected.
    manual_seed(1);
    auto net = small_net();
    optim::SGD sgd(net->parameters(), {.lr = 0.1f, .momentum = 0.9f});
    io::save_checkpoint(path, *net, sgd);
    optim::Adam adam(net->parameters(), {});
    REQUIRE_THROWS_AS(io::load_optimizer(path, adam), Error);
}

// ---------------------------------------------------------------------------------------------
// gzip

TEST_CASE("gunzip reads concatenated members and rejects truncated or trailing-garbage streams", "[gzip]") {
    TempDir dir;
    auto gz = [&](const std::string& text) {
        const std::string path = dir.file("part.gz");
        gzFile f = gzopen(path.c_str(), "wb");
        REQUIRE(f != nullptr);
        REQUIRE(gzwrite(f, text.data(), static_cast<unsigned>(text.size())) == static_cast<int>(text.size()));
        REQUIRE(gzclose(f) == Z_OK);
        return read_bytes(path);
    };
    auto a = gz("first member, "), b = gz("second member");
    auto both = a;
    both.insert(both.end(), b.begin(), b.end());
    auto out = gunzip(both, "both.gz");
    REQUIRE(std::string(out.begin(), out.end()) == "first member, second member");

    auto cut = a;
    cut.resize(cut.size() - 4);  // loses part of the trailer
    REQUIRE_THROWS_WITH(gunzip(cut, "cut.gz"), Catch::Contains("cut.gz") && Catch::Contains("truncated"));
    auto trailing = a;
    trailing.insert(trailing.end(), {'x', 'y', 'z'});
    REQUIRE_THROWS_WITH(gunzip(trailing, "t.gz"), Catch::Contains("trailing garbage"));
    auto corrupt = a;
    corrupt[12] ^= 0xff;  // inside the deflate data
    REQUIRE_THROWS_AS(gunzip(corrupt, "c.gz"), Error);

    // read_file_maybe_gzip passes plain files through.
    write_bytes(dir.file("plain"), {0x1f, 0x00, 0x05});
    REQUIRE(read_file_maybe_gzip(dir.file("plain")) == std::vector<uint8_t>{0x1f, 0x00, 0x05});
}

// ---------------------------------------------------------------------------------------------
// images

// stb_image_write's callback: appends the bytes to the std::vector<uint8_t> at ctx.
static void append_to_bytes(void* ctx, void* data, int size) {
    auto* out = static_cast<std::vector<uint8_t>*>(ctx);
    out->insert(out->end(), static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + size);
}

TEST_CASE("load_image reads a PNG exactly and resizes it", "[image]") {
    TempDir dir;
    const int h = 5, w = 7;
    std::vector<uint8_t> rgb(h * w * 3);
    for (size_t k = 0; k < rgb.size(); ++k) rgb[k] = static_cast<uint8_t>(k * 37 % 256);
    const std::string path = dir.file("pic.png");
    REQUIRE(stbi_write_png(path.c_str(), w, h, 3, rgb.data(), w * 3) != 0);

    Tensor<uint8_t> img = io::load_image(path);
    REQUIRE(img.shape() == Shape{h, w, 3});
    REQUIRE(img.to_vector() == rgb);

    Tensor<uint8_t> grey = io::load_image(path, 1);
    REQUIRE(grey.shape() == Shape{h, w, 1});

    Tensor<uint8_t> big = io::load_image(path, 32, 32);
    REQUIRE(big.shape() == Shape{32, 32, 3});

    // A flat image stays flat through resizing.
    auto flat = Tensor<uint8_t>::full({9, 9, 3}, 77);
    for (uint8_t v : io::resize_image(flat, 4, 6)) REQUIRE(v == 77);
    REQUIRE_THROWS_AS(io::resize_image(flat, 0, 4), Error);
    REQUIRE_THROWS_AS(io::resize_image(Tensor<uint8_t>(Shape{4, 4}), 2, 2), Error);
}

TEST_CASE("load_image raises bnn::Error with stb's reason on unreadable files", "[image]") {
    TempDir dir;
    const std::string garbage = dir.file("garbage.png");
    write_bytes(garbage, {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
    // stb says "unknown image type" for bytes no decoder recognises.
    REQUIRE_THROWS_WITH(io::load_image(garbage), Catch::Contains("garbage.png") && Catch::Contains("unknown image type"));
    REQUIRE_THROWS_WITH(io::load_image(dir.file("missing.png")), Catch::Contains("missing.png"));
    REQUIRE_THROWS_AS(io::load_image(garbage, 5), Error);
}

TEST_CASE("load_image refuses a JPEG Huffman table of more than 256 codes", "[image][fuzz]") {
    // Found by tests/fuzz/fuzz_image: Debian's stb_image 2.27 writes past its Huffman arrays
    // when the 16 code counts of a DHT segment sum past 256. The test spoils the first table
    // of a JPEG that stb wrote.
    TempDir dir;
    std::vector<uint8_t> rgb(8 * 8 * 3, 100), jpeg;
    REQUIRE(stbi_write_jpg_to_func(append_to_bytes, &jpeg, 8, 8, 3, rgb.data(), 90) != 0);
    const std::string good = dir.file("good.jpg"), bad = dir.file("bad.jpg");
    write_bytes(good, jpeg);
    REQUIRE(io::load_image(good).shape() == Shape{8, 8, 3});
    size_t dht = 2;
    while (dht + 1 < jpeg.size() && !(jpeg[dht] == 0xFF && jpeg[dht + 1] == 0xC4)) ++dht;
    REQUIRE(dht + 21 < jpeg.size());
    for (size_t i = dht + 5; i < dht + 21; ++i) jpeg[i] = 255;  // the first table's 16 code counts
    write_bytes(bad, jpeg);
    REQUIRE_THROWS_WITH(io::load_image(bad), Catch::Contains("bad.jpg") && Catch::Contains("Huffman table") &&
                                                 Catch::Contains("4080 codes"));
}

TEST_CASE("load_image refuses a JPEG scan that uses a Huffman table no DHT segment defines", "[image][fuzz]") {
    // Found by tests/fuzz/fuzz_image (UBSan: index -16776289 out of bounds in stb's Huffman
    // decoder): stb 2.27 decodes a scan with its uninitialised memory for a table no DHT defined.
    // And a JPEG behind fill bytes (FF FF ... D8), which stb reads, escaped the checks: UBSan found
    // the earlier 257-code table again that way. The test spoils a JPEG that stb wrote.
    TempDir dir;
    std::vector<uint8_t> rgb(8 * 8 * 3, 100), jpeg;
    REQUIRE(stbi_write_jpg_to_func(append_to_bytes, &jpeg, 8, 8, 3, rgb.data(), 90) != 0);
    std::vector<uint8_t> filled = {0xFF, 0xFF};
    filled.insert(filled.end(), jpeg.begin() + 1, jpeg.end());  // FF FF FF D8 ...
    const std::string good = dir.file("filled.jpg"), undefined = dir.file("undefined.jpg");
    write_bytes(good, filled);
    REQUIRE(io::load_image(good).shape() == Shape{8, 8, 3});
    size_t sos = 2;
    while (sos + 1 < filled.size() && !(filled[sos] == 0xFF && filled[sos + 1] == 0xDA)) ++sos;
    REQUIRE(sos + 7 < filled.size());
    filled[sos + 6] = 0x30;  // the first component's tables: DC 3 (undefined), AC 0
    write_bytes(undefined, filled);
    REQUIRE_THROWS_WITH(io::load_image(undefined), Catch::Contains("undefined.jpg") &&
                                                       Catch::Contains("uses the DC Huffman table 3") &&
                                                       Catch::Contains("no DHT segment before it defines"));
}

TEST_CASE("load_image refuses a PNM header number that would overflow stb's int", "[image][fuzz]") {
    // Found by tests/fuzz/fuzz_image: stb_image 2.27 parses a PNM width of 45 digits into an int
    // (signed overflow, undefined behaviour). The fuzzer's header, and a valid file beside it.
    TempDir dir;
    const std::string bad = dir.file("wide.pgm"), good = dir.file("good.pgm"), commented = dir.file("note.pgm");
    const std::string digits(44, '9');
    std::string header = "P5\n5" + digits + "\n2 2\n";
    write_bytes(bad, std::vector<uint8_t>(header.begin(), header.end()));
    REQUIRE_THROWS_WITH(io::load_image(bad, 1), Catch::Contains("wide.pgm") && Catch::Contains("width has 45 digits"));
    std::string pgm = "P5\n# two by two\n2 2\n255\n";
    pgm += std::string{'\x01', '\x02', '\x03', '\x04'};
    write_bytes(good, std::vector<uint8_t>(pgm.begin(), pgm.end()));
    REQUIRE(io::load_image(good, 1).to_vector() == std::vector<uint8_t>{1, 2, 3, 4});
    std::string long_max = "P5 2 2 # comment\n0000000255\n";
    write_bytes(commented, std::vector<uint8_t>(long_max.begin(), long_max.end()));
    REQUIRE_THROWS_WITH(io::load_image(commented, 1), Catch::Contains("maximum value has 10 digits"));
}

TEST_CASE("load_image refuses a 16-bit PNM whose pixels are short and converts full ones", "[image][fuzz]") {
    // Found by tests/fuzz/fuzz_image: a PGM of 2x2 pixels with maximum value 355 (2 bytes a
    // sample, 8 bytes of pixels) and 4 bytes after its header. The old check compared the whole
    // file (15 bytes) with the pixels, and stb 2.27 then read past its buffer. These are its bytes.
    TempDir dir;
    const std::string short_file = dir.file("short.pgm");
    const std::string header = "P5\n2 2\n355\n";
    std::vector<uint8_t> bytes(header.begin(), header.end());
    bytes.insert(bytes.end(), {0x10, 0x20, 0x30, 0x40});
    REQUIRE(bytes.size() == 15);
    write_bytes(short_file, bytes);
    REQUIRE_THROWS_WITH(io::load_image(short_file, 1), Catch::Contains("short.pgm") && Catch::Contains("16 bits") &&
                                                           Catch::Contains("8 bytes of pixels, but holds 4") &&
                                                           Catch::Contains("truncated"));
    REQUIRE_THROWS_WITH(io::load_image(short_file, 3), Catch::Contains("truncated"));

    // Complete files: samples are big-endian and scaled from their maximum value to 255, in any
    // number of channels. (stb 2.27 reads 2-byte samples little-endian, does not scale, and reads
    // past its buffer when it converts a 16-bit PNM's channels; bnn decodes PNM itself.)
    const std::string grey = dir.file("grey16.pgm"), colour = dir.file("rgb16.ppm"), low = dir.file("max100.pgm");
    const std::string grey_header = "P5\n2 2\n65535\n";
    std::vector<uint8_t> pgm(grey_header.begin(), grey_header.end());
    pgm.insert(pgm.end(), {0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80});  // 0x1020 * 255 / 65535 = 16.06
    write_bytes(grey, pgm);
    REQUIRE(io::load_image(grey, 1).to_vector() == std::vector<uint8_t>{0x10, 0x30, 0x50, 0x70});
    REQUIRE(io::load_image(grey, 2).to_vector() ==
            std::vector<uint8_t>{0x10, 255, 0x30, 255, 0x50, 255, 0x70, 255});
    REQUIRE(io::load_image(grey, 3).to_vector() ==
            std::vector<uint8_t>{0x10, 0x10, 0x10, 0x30, 0x30, 0x30, 0x50, 0x50, 0x50, 0x70, 0x70, 0x70});
    const std::string ppm_header = "P6 1 2 65535\n";
    std::vector<uint8_t> ppm(ppm_header.begin(), ppm_header.end());
    ppm.insert(ppm.end(), {200, 200, 100, 100, 50, 50, 0, 0, 255, 255, 10, 10});  // 257 x (200, 100, 50), (0, 255, 10)
    write_bytes(colour, ppm);
    REQUIRE(io::load_image(colour, 3).to_vector() == std::vector<uint8_t>{200, 100, 50, 0, 255, 10});
    REQUIRE(io::load_image(colour, 4).to_vector() == std::vector<uint8_t>{200, 100, 50, 255, 0, 255, 10, 255});
    // Grey as stb computes it from 8-bit RGB: (77 r + 150 g + 29 b) >> 8.
    REQUIRE(io::load_image(colour, 1).to_vector() ==
            std::vector<uint8_t>{(200 * 77 + 100 * 150 + 50 * 29) >> 8, (255 * 150 + 10 * 29) >> 8});
    ppm.pop_back();
    write_bytes(colour, ppm);
    REQUIRE_THROWS_WITH(io::load_image(colour, 3), Catch::Contains("12 bytes of pixels, but holds 11"));
    // A maximum value below 255 scales up, rounding; a sample above it is white.
    const std::string low_header = "P5 2 2 100\n";
    std::vector<uint8_t> max100(low_header.begin(), low_header.end());
    max100.insert(max100.end(), {0, 50, 100, 255});
    write_bytes(low, max100);
    REQUIRE(io::load_image(low, 1).to_vector() == std::vector<uint8_t>{0, 128, 255, 255});
}

TEST_CASE("load_image reads a PNG whose first IDAT chunk is empty", "[image][fuzz]") {
    // Found by tests/fuzz/fuzz_image (its input is in the fuzz corpus): stb 2.27 passes a null
    // pointer to memcpy for an empty first IDAT chunk (undefined behaviour; UBSan stops there).
    // Such a chunk holds nothing: the image is the one without it.
    TempDir dir;
    std::vector<uint8_t> rgb(3 * 2 * 3), png;
    for (size_t k = 0; k < rgb.size(); ++k) rgb[k] = static_cast<uint8_t>(k * 13);
    REQUIRE(stbi_write_png_to_func(append_to_bytes, &png, 3, 2, 3, rgb.data(), 3 * 3) != 0);
    size_t idat = 8;
    while (idat + 8 < png.size() && std::memcmp(&png[idat + 4], "IDAT", 4) != 0)
        idat += 12 + ((size_t{png[idat]} << 24) | (size_t{png[idat + 1]} << 16) | (size_t{png[idat + 2]} << 8) | png[idat + 3]);
    REQUIRE(idat + 8 < png.size());
    const std::vector<uint8_t> empty_idat = {0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xAF, 0x06, 0x1E};
    png.insert(png.begin() + static_cast<std::ptrdiff_t>(idat), empty_idat.begin(), empty_idat.end());
    png.insert(png.begin() + static_cast<std::ptrdiff_t>(idat), empty_idat.begin(), empty_idat.end());
    const std::string path = dir.file("empty_idat.png");
    write_bytes(path, png);
    REQUIRE(io::load_image(path).to_vector() == rgb);
    REQUIRE(io::detail::png_for_stb(png, path).size() == png.size() - 24);
}

TEST_CASE("load_image refuses a PNG whose IDAT chunk claims more data than the file holds", "[image][fuzz]") {
    // Found by tests/fuzz/fuzz_image (libFuzzer's out-of-memory limit): stb 2.27 allocates an
    // IDAT chunk's declared length before reading it, here 2 GB for a file of 149 bytes. These are
    // its bytes (the fuzzer's selector byte removed).
    TempDir dir;
    const std::string bomb = dir.file("bomb.png");
    write_bytes(bomb, {0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
                       0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00, 0x00, 0x26, 0x93, 0x09,
                       0x29, 0x00, 0x00, 0x00, 0x28, 0x49, 0x44, 0x41, 0x54, 0x78, 0x5e, 0x63, 0x64, 0xe0, 0x95, 0x52,
                       0x87, 0x01, 0x86, 0x38, 0x2b, 0xb7, 0x1d, 0xbe, 0x70, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d,
                       0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x08, 0x02, 0x00, 0x00,
                       0x00, 0x26, 0x93, 0x09, 0x54, 0x50, 0x42, 0x38, 0x28, 0x49, 0x44, 0x41, 0x54, 0x6d, 0x46, 0x0b,
                       0xd7, 0x20, 0xb8, 0x0c, 0xe3, 0x95, 0x87, 0xef, 0xe0, 0x1c, 0x00, 0x75, 0x86, 0x0e, 0x64, 0x78,
                       0x8e, 0xf7, 0xd5, 0x77, 0x16, 0x0e, 0x64, 0x78, 0x8e, 0x00, 0x90, 0x00, 0x00, 0x00, 0x00, 0xa4,
                       0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0xa4, 0x49, 0x45, 0x4e,
                       0x44, 0xae, 0x42, 0x60, 0x82});
    REQUIRE_THROWS_WITH(io::load_image(bomb, 32, 32, 3),
                        Catch::Contains("bomb.png") && Catch::Contains("corrupt PNG") && Catch::Contains("IDAT chunk"));
    // A chunk cut short at the end is refused the same way; one after IEND is never read.
    std::vector<uint8_t> rgb(2 * 2 * 3, 9), png;
    REQUIRE(stbi_write_png_to_func(append_to_bytes, &png, 2, 2, 3, rgb.data(), 2 * 3) != 0);
    const std::string after_end = dir.file("after_end.png"), cut = dir.file("cut.png");
    std::vector<uint8_t> trailing = png;
    trailing.insert(trailing.end(), {0x7f, 0xff, 0xff, 0xff, 'I', 'D', 'A', 'T'});
    write_bytes(after_end, trailing);
    REQUIRE(io::load_image(after_end).to_vector() == rgb);
    size_t idat = 8;
    while (std::memcmp(&png[idat + 4], "IDAT", 4) != 0)
        idat += 12 + ((size_t{png[idat]} << 24) | (size_t{png[idat + 1]} << 16) | (size_t{png[idat + 2]} << 8) | png[idat + 3]);
    write_bytes(cut, std::vector<uint8_t>(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(idat + 10)));
    REQUIRE_THROWS_WITH(io::load_image(cut), Catch::Contains("cut.png") && Catch::Contains("IDAT chunk at byte 33"));
}

TEST_CASE("load_image refuses an image larger than its pixel limit before decoding it", "[image][fuzz]") {
    // Found by tests/fuzz/fuzz_image: a run-length TGA file of 36 bytes whose header declares
    // 22115 x 16385 pixels, for which stb_image allocates 1 GB (libFuzzer's out-of-memory
    // limit). These are its bytes; the fuzzer read it as 4 channels resized to 32 x 32.
    TempDir dir;
    const std::string bomb = dir.file("bomb.tga");
    write_bytes(bomb, {0x00, 0x00, 0x0a, 0x00, 0x00, 0x5d, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00, 0x63, 0x56, 0x01, 0x40,
                       0x18, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfb, 0x21, 0x3c,
                       0x2f, 0x22, 0x63, 0x00});
    REQUIRE_THROWS_WITH(io::load_image(bomb, 32, 32, 4),
                        Catch::Contains("bomb.tga") && Catch::Contains("declares 22115x16385 pixels") &&
                            Catch::Contains("more than the limit of 67108864"));
    // The limit is the caller's: an 8x8 PNG loads under 64 pixels and not under 63.
    std::vector<uint8_t> rgb(8 * 8 * 3, 50);
    const std::string png = dir.file("small.png");
    REQUIRE(stbi_write_png(png.c_str(), 8, 8, 3, rgb.data(), 8 * 3) != 0);
    REQUIRE(io::load_image(png, 3, io::ImageLimit{64}).shape() == Shape{8, 8, 3});
    REQUIRE_THROWS_WITH(io::load_image(png, 3, io::ImageLimit{63}), Catch::Contains("8x8 pixels"));
    REQUIRE_THROWS_AS(io::load_image(png, 4, 4, 3, io::ImageLimit{63}), Error);
}

TEST_CASE("load_deployed refuses a module tree that asks for more weights than its file holds", "[deploy][fuzz]") {
    // A deployment file's module tree once decided alone how much build_module allocated: a conv
    // of 2^24 x 2^24 channels in a file of a few KB ended in std::bad_alloc, not bnn::Error.
    TempDir dir;
    nn::Sequential net;
    net.push_back(std::make_shared<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 4, .padding = 1}));
    net.push_back(std::make_shared<nn::BatchNorm2d>(4));
    const std::string good = dir.file("good.deploy.safetensors"), huge = dir.file("huge.deploy.safetensors");
    io::save_deployed(good, net);
    REQUIRE(io::load_deployed(good).model->num_parameters() == net.num_parameters());
    io::SafetensorsFile file = io::load_safetensors(good);
    io::Json tree = io::Json::parse(file.metadata.at("module_tree"));
    tree["children"][0][1]["options"]["in_channels"] = int64_t{1} << 24;
    tree["children"][0][1]["options"]["out_channels"] = int64_t{1} << 24;
    file.metadata["module_tree"] = tree.dump();
    io::save_safetensors(huge, file.tensors, file.metadata);
    REQUIRE_THROWS_WITH(io::load_deployed(huge), Catch::Contains("huge.deploy.safetensors") &&
                                                     Catch::Contains("describes about") && Catch::Contains("weights"));
}
