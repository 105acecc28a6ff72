#pragma once
/// @file safetensors.hpp
/// Reading and writing the safetensors format, so Python's `safetensors` and PyTorch read what
/// bnn writes:
///
///     [8 bytes: N, little-endian u64][N bytes: JSON header, space-padded][raw tensor data]
///
/// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
/// relative to the start of the data), plus an optional "__metadata__" object of string values.
/// bnn pads the header so the data starts on an 8-byte boundary and writes the dtypes F32, I32,
/// U8 and U64. It also reads what PyTorch writes: I64 tensors (e.g. BN's num_batches_tracked) as
/// int64, and F16 / BF16 tensors widened exactly to F32 (every half and bfloat16 value is a
/// float), their names listed in SafetensorsFile::widened. Reading validates every field and
/// raises bnn::Error naming the file and the problem: a corrupt file never crashes and is never
/// read silently wrong.
#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/file.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/io/atomic_file.hpp"

static_assert(std::endian::native == std::endian::little,
              "bnn's safetensors I/O copies raw little-endian data and needs a little-endian host");

namespace bnn::io {

/// A tensor of any dtype bnn stores in safetensors files.
using AnyTensor = std::variant<Tensor<float>, Tensor<int32_t>, Tensor<uint8_t>, Tensor<uint64_t>, Tensor<int64_t>>;
/// Named tensors in file order.
using NamedTensors = std::vector<std::pair<std::string, AnyTensor>>;
/// The "__metadata__" map (string keys and values only, as the format requires).
using Metadata = std::map<std::string, std::string>;

namespace detail {
template <class T> struct DTypeName;
template <> struct DTypeName<float> { static constexpr const char* value = "F32"; };
template <> struct DTypeName<int32_t> { static constexpr const char* value = "I32"; };
template <> struct DTypeName<uint8_t> { static constexpr const char* value = "U8"; };
template <> struct DTypeName<uint64_t> { static constexpr const char* value = "U64"; };
template <> struct DTypeName<int64_t> { static constexpr const char* value = "I64"; };

/// IEEE half (binary16) bits -> float, exactly (subnormals, infinities and NaN included).
inline float half_to_float(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);  // inf or NaN (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);  // rebias 15 -> 127
    } else if (man == 0) {
        bits = sign;  // +-0
    } else {  // subnormal: man * 2^-24, exact in float
        const float v = static_cast<float>(man) * 0x1p-24f;
        bits = sign | std::bit_cast<uint32_t>(v);
    }
    return std::bit_cast<float>(bits);
}
/// bfloat16 bits -> float: the upper half of a float's bits.
inline float bfloat16_to_float(uint16_t b) { return std::bit_cast<float>(static_cast<uint32_t>(b) << 16); }

inline constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the limit the reference reader uses

inline const char* dtype_of(const AnyTensor& t) {
    return std::visit([](const auto& x) { return DTypeName<typename std::decay_t<decltype(x)>::value_type>::value; }, t);
}
inline uint64_t byte_size(const AnyTensor& t) {
    return std::visit([](const auto& x) {
        return static_cast<uint64_t>(x.numel()) * sizeof(typename std::decay_t<decltype(x)>::value_type);
    }, t);
}
inline const void* raw_data(const AnyTensor& t) {
    return std::visit([](const auto& x) -> const void* { return x.data(); }, t);
}
inline const Shape& shape_of(const AnyTensor& t) {
    return std::visit([](const auto& x) -> const Shape& { return x.shape(); }, t);
}

/// The JSON header (unpadded) for the tensors laid out back to back in the given order.
inline std::string safetensors_header(const NamedTensors& tensors, const Metadata& metadata) {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
        nlohmann::ordered_json meta = nlohmann::ordered_json::object();
        for (const auto& [k, v] : metadata) meta[k] = v;
        header["__metadata__"] = meta;
    }
    uint64_t offset = 0;
    for (const auto& [name, t] : tensors) {
        BNN_CHECK(!name.empty() && name != "__metadata__", "save_safetensors: invalid tensor name '", name, "'");
        BNN_CHECK(!header.contains(name), "save_safetensors: tensor name '", name, "' appears twice");
        BNN_CHECK(std::visit([](const auto& x) { return x.defined(); }, t), "save_safetensors: tensor '", name,
                  "' is undefined");
        const uint64_t bytes = byte_size(t);
        header[name] = {{"dtype", dtype_of(t)},
                        {"shape", shape_of(t).dims()},
                        {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    return header.dump();
}

template <class T>
AnyTensor make_tensor(const Shape& shape, const uint8_t* bytes) {
    Tensor<T> t = Tensor<T>::empty(shape);
    if (t.numel()) std::memcpy(t.data(), bytes, sizeof(T) * static_cast<size_t>(t.numel()));
    return t;
}
}  // namespace detail

/// Writes the tensors (and metadata) to a stream sink in the safetensors layout.
template <class Sink>
void write_safetensors(Sink& sink, const NamedTensors& tensors, const Metadata& metadata = {}) {
    std::string header = detail::safetensors_header(tensors, metadata);
    // Pad with spaces so the data (after the 8-byte length) starts 8-byte aligned.
    header.append((8 - header.size() % 8) % 8, ' ');
    uint8_t len[8];
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
    sink.write(len, 8);
    sink.write(header.data(), header.size());
    for (const auto& [name, t] : tensors) sink.write(detail::raw_data(t), detail::byte_size(t));
}

/// The bytes of a safetensors file holding `tensors` (in order) and `metadata`.
inline std::vector<uint8_t> serialize_safetensors(const NamedTensors& tensors, const Metadata& metadata = {}) {
    struct VectorSink {
        std::vector<uint8_t> bytes;
        void write(const void* p, size_t n) {
            const auto* b = static_cast<const uint8_t*>(p);
            bytes.insert(bytes.end(), b, b + n);
        }
    } sink;
    write_safetensors(sink, tensors, metadata);
    return std::move(sink.bytes);
}

/// Writes a safetensors file atomically (temporary file, fsync, rename): a failure leaves an
/// existing file at `path` intact.
inline void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata = {}) {
    // Validate names and build the header before touching the file system.
    (void)detail::safetensors_header(tensors, metadata);
    atomic_write_file(path, [&](FileSink& sink) { write_safetensors(sink, tensors, metadata); });
}

/// The contents of a safetensors file.
struct SafetensorsFile {
    NamedTensors tensors;  ///< in data-offset order
    Metadata metadata;
    std::map<std::string, std::string> widened;  ///< F32 tensors read from F16 / BF16: name -> stored dtype
    std::string source;    ///< the file name, for messages

    /// The tensor called `name`, or nullptr.
    const AnyTensor* find(const std::string& name) const {
        for (const auto& [n, t] : tensors)
            if (n == name) return &t;
        return nullptr;
    }
    bool contains(const std::string& name) const { return find(name) != nullptr; }
    /// The tensor called `name` as Tensor<T>; bnn::Error when absent or of another dtype.
    template <class T>
    Tensor<T> get(const std::string& name) const {
        const AnyTensor* t = find(name);
        BNN_CHECK(t, "safetensors '", source, "': no tensor named '", name, "'");
        const Tensor<T>* typed = std::get_if<Tensor<T>>(t);
        BNN_CHECK(typed, "safetensors '", source, "': tensor '", name, "' has dtype ", detail::dtype_of(*t),
                  ", expected ", detail::DTypeName<T>::value);
        return *typed;
    }
};

namespace detail {
/// Throws the reader's bnn::Error: "safetensors '<source>': <parts>".
struct SafetensorsError {
    const std::string& source;
    template <class... Parts>
    [[noreturn]] void operator()(const Parts&... parts) const {
        ::bnn::fail("safetensors '", source, "': ", parts...);
    }
};

/// One tensor's header entry, validated against the data section's size.
struct SafetensorsEntry {
    std::string name;
    std::string dtype;
    Shape shape;
    uint64_t begin, end;
};

/// Bytes per element of a dtype bnn reads, or 0 for one it does not.
inline uint64_t safetensors_element_size(const std::string& dtype) {
    if (dtype == "F32" || dtype == "I32") return 4;
    if (dtype == "U8") return 1;
    if (dtype == "U64" || dtype == "I64") return 8;
    if (dtype == "F16" || dtype == "BF16") return 2;
    return 0;
}

/// The JSON header of a file of `size` bytes; `header_bytes` receives its length.
inline nlohmann::json read_safetensors_header(const uint8_t* data, uint64_t size, uint64_t& header_bytes,
                                              const SafetensorsError& bad) {
    if (size < 8) bad("file is ", size, " bytes, too short for the 8-byte header length");
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(data[i]) << (8 * i);
    if (n > size - 8) bad("header length ", n, " runs past the end of the file (", size, " bytes)");
    if (n > kMaxHeaderBytes) bad("header length ", n, " exceeds the limit of ", kMaxHeaderBytes);
    if (n < 2 || data[8] != '{') bad("header does not start with a JSON object '{' at byte offset 8");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(data + 8, data + 8 + n);
    } catch (const nlohmann::json::exception& e) {
        bad("header is not valid JSON: ", e.what());
    }
    if (!header.is_object()) bad("header is not a JSON object");
    header_bytes = n;
    return header;
}

/// The "__metadata__" object's strings.
inline Metadata read_safetensors_metadata(const nlohmann::json& v, const SafetensorsError& bad) {
    if (!v.is_object()) bad("__metadata__ must be an object of strings");
    Metadata metadata;
    for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) bad("__metadata__ value of '", m.key(), "' is not a string");
        metadata[m.key()] = m.value().get<std::string>();
    }
    return metadata;
}

/// The entry of tensor `name`: its fields present and typed, its dtype known, its shape's size
/// in range and its offsets spanning exactly that size within the `data_size` data bytes.
inline SafetensorsEntry read_safetensors_entry(const std::string& name, const nlohmann::json& v, uint64_t data_size,
                                               const SafetensorsError& bad) {
    if (!v.is_object()) bad("entry '", name, "' is not an object");
    if (!v.contains("dtype") || !v["dtype"].is_string()) bad("tensor '", name, "' has no dtype string");
    if (!v.contains("shape") || !v["shape"].is_array()) bad("tensor '", name, "' has no shape array");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() || v["data_offsets"].size() != 2)
        bad("tensor '", name, "' needs data_offsets [begin, end]");
    SafetensorsEntry e;
    e.name = name;
    e.dtype = v["dtype"].get<std::string>();
    std::vector<int64_t> dims;
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned()) bad("tensor '", name, "' has a shape entry that is not a non-negative integer: ", d.dump());
        const uint64_t x = d.get<uint64_t>();
        if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) || (x && numel > UINT64_MAX / x))
            bad("tensor '", name, "' has a shape too large: ", v["shape"].dump());
        numel *= x;
        dims.push_back(static_cast<int64_t>(x));
    }
    e.shape = Shape(std::move(dims));
    for (const auto& o : v["data_offsets"])
        if (!o.is_number_unsigned()) bad("tensor '", name, "' has a data offset that is not a non-negative integer");
    e.begin = v["data_offsets"][0].get<uint64_t>();
    e.end = v["data_offsets"][1].get<uint64_t>();
    const uint64_t elem = safetensors_element_size(e.dtype);
    if (elem == 0) bad("tensor '", name, "' has dtype '", e.dtype, "', which bnn does not read (F32, F16, BF16, I64, I32, U8, U64)");
    if (e.begin > e.end) bad("tensor '", name, "' has data_offsets [", e.begin, ", ", e.end, "] with begin > end");
    if (e.end > data_size)
        bad("tensor '", name, "' has data_offsets [", e.begin, ", ", e.end, "] beyond the ", data_size,
            " data bytes (file truncated?)");
    if (numel > UINT64_MAX / elem || numel * elem != e.end - e.begin)
        bad("tensor '", name, "' of dtype ", e.dtype, " and shape ", e.shape.str(), " needs ", numel * elem,
            " bytes, but its data_offsets span ", e.end - e.begin);
    return e;
}

/// Sorts the entries by offset and requires them to tile the `data_size` data bytes exactly:
/// each starts where the last ended, no overlap, no gap, nothing left over.
inline void check_safetensors_tiling(std::vector<SafetensorsEntry>& entries, uint64_t data_size,
                                     const SafetensorsError& bad) {
    std::sort(entries.begin(), entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    uint64_t expected = 0;
    for (const SafetensorsEntry& e : entries) {
        if (e.begin < expected) bad("tensor '", e.name, "' at data offset ", e.begin, " overlaps the previous tensor (ending at ", expected, ")");
        if (e.begin > expected) bad("gap in the data: bytes [", expected, ", ", e.begin, ") belong to no tensor (before '", e.name, "')");
        expected = e.end;
    }
    if (expected != data_size)
        bad("the tensors cover ", expected, " data bytes but the file holds ", data_size, " after the header");
}

/// The tensor of a validated entry from its bytes at p; F16 and BF16 widened to F32.
inline AnyTensor read_safetensors_tensor(const SafetensorsEntry& e, const uint8_t* p) {
    if (e.dtype == "F32") return make_tensor<float>(e.shape, p);
    if (e.dtype == "I32") return make_tensor<int32_t>(e.shape, p);
    if (e.dtype == "U8") return make_tensor<uint8_t>(e.shape, p);
    if (e.dtype == "U64") return make_tensor<uint64_t>(e.shape, p);
    if (e.dtype == "I64") return make_tensor<int64_t>(e.shape, p);
    Tensor<float> f = Tensor<float>::empty(e.shape);
    const bool half = e.dtype == "F16";
    for (int64_t i = 0; i < f.numel(); ++i) {
        uint16_t v;
        std::memcpy(&v, p + 2 * i, 2);
        f[i] = half ? half_to_float(v) : bfloat16_to_float(v);
    }
    return f;
}
}  // namespace detail

/// Parses safetensors bytes; `source` names them in errors. Validates the header length, the
/// JSON, every dtype, shape and offset pair (in range, no overlap, no gap, covering all data).
inline SafetensorsFile parse_safetensors(const uint8_t* data, uint64_t size, const std::string& source) {
    const detail::SafetensorsError bad{source};
    uint64_t header_bytes = 0;
    const nlohmann::json header = detail::read_safetensors_header(data, size, header_bytes, bad);
    const uint64_t data_begin = 8 + header_bytes, data_size = size - data_begin;

    SafetensorsFile file;
    file.source = source;
    std::vector<detail::SafetensorsEntry> entries;
    for (auto it = header.begin(); it != header.end(); ++it) {
        if (it.key() == "__metadata__")
            file.metadata = detail::read_safetensors_metadata(it.value(), bad);
        else
            entries.push_back(detail::read_safetensors_entry(it.key(), it.value(), data_size, bad));
    }
    detail::check_safetensors_tiling(entries, data_size, bad);

    for (const detail::SafetensorsEntry& e : entries) {
        file.tensors.emplace_back(e.name, detail::read_safetensors_tensor(e, data + data_begin + e.begin));
        if (e.dtype == "F16" || e.dtype == "BF16") file.widened[e.name] = e.dtype;
    }
    return file;
}

/// Reads and validates a safetensors file.
inline SafetensorsFile load_safetensors(const std::string& path) {
    std::vector<uint8_t> bytes = read_file(path);
    return parse_safetensors(bytes.data(), bytes.size(), path);
}

}  // namespace bnn::io
