// Fuzzes the safetensors parser (io::parse_safetensors): any bytes either parse into tensors
// that tile the data exactly, or raise bnn::Error. Anything else (a crash, a sanitizer report,
// another exception) is a finding.
#include <cstddef>
#include <cstdint>

#include "bnn/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        const bnn::io::SafetensorsFile file = bnn::io::parse_safetensors(data, size, "fuzz input");
        // What a reader does next: look tensors up by name and type.
        for (const auto& [name, t] : file.tensors) {
            if (file.find(name) == nullptr) __builtin_trap();  // a parsed tensor must be found by its name
            (void)bnn::io::detail::byte_size(t);
            try {
                (void)file.get<float>(name);
            } catch (const bnn::Error&) {
            }
        }
    } catch (const bnn::Error&) {
    }
    return 0;
}
