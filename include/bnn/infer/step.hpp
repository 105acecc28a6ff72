#pragma once
/// @file step.hpp
/// Step: one node of a compiled inference graph (graph.hpp). A step reads one or more input
/// buffers and writes one output buffer; the graph plans every buffer once per input shape, so
/// a step's run() only computes. Steps are made by infer::compile from a network's modules.
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/shape.hpp"

namespace bnn::infer {

class Step {
public:
    Step(std::string path, const char* kind) : path_(std::move(path)), kind_(kind) {}
    virtual ~Step() = default;
    Step(const Step&) = delete;
    Step& operator=(const Step&) = delete;

    /// The output shape for these input shapes; bnn::Error naming the module path when they do
    /// not fit. Called at every (re)plan, before run(): steps size their own scratch here.
    virtual Shape plan(const std::vector<Shape>& inputs) = 0;
    /// out = the step applied to in[0], in[1], ... (the planned shapes).
    virtual void run(const float* const* in, float* out) = 0;
    /// The input whose buffer the output may overwrite, or -1. The graph grants it only when that
    /// input is read by no later step.
    virtual int in_place_input() const { return -1; }
    /// True for steps that only reinterpret their input's shape (Flatten): no buffer, no work.
    virtual bool is_view() const { return false; }
    /// What is fused into this step beyond its kind ("BN+sign pack, gate, PReLU, residual").
    virtual std::string fused() const { return {}; }

    /// The dotted path of the module this step comes from ("block3.half1").
    const std::string& path() const { return path_; }
    /// A short category for profiles: "binary conv", "float conv", "batch norm", ...
    const char* kind() const { return kind_; }

protected:
    /// bnn::Error "infer::compile: '<path>' (<kind>): <pieces>".
    template <class... Pieces>
    [[noreturn]] void fail(const Pieces&... pieces) const {
        ::bnn::fail("infer: '", path_.empty() ? std::string("<model>") : path_, "' (", kind_, "): ", pieces...);
    }
    template <class... Pieces>
    void check(bool ok, const Pieces&... pieces) const {
        if (!ok) fail(pieces...);
    }

private:
    std::string path_;
    const char* kind_;
};

}  // namespace bnn::infer
