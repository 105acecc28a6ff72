#pragma once
/// @file graph.hpp
/// Graph: a compiled inference network (made by infer::compile, compile.hpp). It is a list of
/// steps (step.hpp), step i reading earlier values and writing value i + 1; value 0 is the
/// input. Buffers are planned once per input shape and thread count:
///
/// - shapes are propagated step by step (a step that does not fit names its module path);
/// - each value lives from its step to its last reader; a value's buffer is handed to a later
///   value once it is dead, and a step that may work in place (element-wise steps, the residual
///   of a binary conv) writes over an input nobody reads after it;
/// - the output has a buffer of its own, returned by run() and overwritten by the next call.
///
/// A steady-state run() (same shape, same thread count) allocates nothing on the vector paths.
/// A graph runs one call at a time (its buffers are its state): use one graph per thread.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/infer/step.hpp"

namespace bnn::infer {

class Graph {
public:
    Graph() = default;

    /// The output of the network for `input` ([N, H, W, C] as the network expects). The first
    /// call for a shape (or thread count) plans; later calls only compute.
    const Tensor<float>& run(const Tensor<float>& input) {
        BNN_CHECK(input.defined(), "infer::Graph::run: the input is undefined");
        return run(input.shape(), input.data());
    }

    /// The output for raw images [N, H, W, C] (uint8, 0..255) of a graph compiled with an integer
    /// stem (CompileOptions::stem), whose stem steps read the bytes and fold the normalization in.
    const Tensor<float>& run(const Tensor<uint8_t>& image) {
        BNN_CHECK(image.defined(), "infer::Graph::run: the input is undefined");
        return run(image.shape(), image.data());
    }

    /// Both run()s on memory the graph does not own (a numpy array, a mapped file): `shape`
    /// [N, H, W, C] of contiguous values at `input`, read in place during the call and not kept.
    const Tensor<float>& run(const Shape& shape, const float* input) {
        BNN_CHECK(!raw_input_, "infer::Graph::run: this graph has an integer stem and takes raw images [N, H, W, C] "
                  "as Tensor<uint8_t> (0..255, not normalized), got a float tensor ", shape.str());
        return run_on(shape, input);
    }
    const Tensor<float>& run(const Shape& shape, const uint8_t* image) {
        BNN_CHECK(raw_input_, "infer::Graph::run: this graph takes normalized float input [N, H, W, C], got a uint8 "
                  "tensor ", shape.str(), "; raw images need a graph compiled with an integer stem (CompileOptions::stem = int16 or int8)");
        return run_on(shape, reinterpret_cast<const float*>(image));  // only stem steps read it
    }

    /// For the compiler: the input is raw uint8 images, read by integer stem steps only.
    void set_raw_input(bool raw) { raw_input_ = raw; }
    bool takes_raw_images() const { return raw_input_; }

    /// Plans for inputs of this shape now (run() does it on demand).
    void plan(const Shape& input_shape) {
        const int values = static_cast<int>(steps_.size()) + 1;
        shapes_.assign(values, Shape{});
        shapes_[0] = input_shape;
        for (size_t i = 0; i < steps_.size(); ++i) {
            std::vector<Shape> in;
            for (int v : inputs_[i]) in.push_back(shapes_[v]);
            shapes_[i + 1] = steps_[i]->plan(in);
        }
        assign_buffers();
        planned_ = input_shape;
        planned_threads_ = num_threads();
    }

    /// Output shape of the current plan.
    const Shape& output_shape() const { return shapes_.at(output_value_); }
    size_t num_steps() const { return steps_.size(); }
    /// Bytes of the activation buffers of the current plan (the steps' own scratch aside).
    int64_t buffer_bytes() const {
        int64_t n = 0;
        for (const auto& b : buffers_) n += b.numel() * static_cast<int64_t>(sizeof(float));
        return n;
    }

    /// One line per step: index, module path, kind, what is fused, planned output shape.
    std::string summary() const {
        std::ostringstream s;
        for (size_t i = 0; i < steps_.size(); ++i) {
            const Step& st = *steps_[i];
            s << i << "  " << (st.path().empty() ? "<model>" : st.path()) << "  " << st.kind();
            if (!st.fused().empty()) s << " [" << st.fused() << "]";
            if (i + 1 < shapes_.size() && shapes_[i + 1].rank() > 0) s << "  -> " << shapes_[i + 1].str();
            s << "\n";
        }
        return s.str();
    }

    /// Per-kind wall time summed over profiled run() calls (two clock reads per step when on).
    void set_profiling(bool on) { profiling_ = on; }
    const std::map<std::string, double>& profile() const { return profile_; }
    int64_t profiled_calls() const { return profiled_calls_; }
    void reset_profile() {
        profile_.clear();
        profiled_calls_ = 0;
    }

    /// Appends a step reading `inputs` (value ids); returns its value id. For the compiler.
    int add(std::unique_ptr<Step> step, std::vector<int> inputs) {
        for (int v : inputs)
            BNN_CHECK(v >= 0 && v <= static_cast<int>(steps_.size()), "infer::Graph::add: value ", v, " does not exist yet");
        steps_.push_back(std::move(step));
        inputs_.push_back(std::move(inputs));
        planned_ = Shape{};
        output_value_ = static_cast<int>(steps_.size());
        return output_value_;
    }
    /// Removes the steps of `dead` values (fused into others; nothing reads them) and renumbers.
    void drop_dead(const std::vector<int>& dead) {
        if (dead.empty()) return;
        std::vector<int> new_id(steps_.size() + 1, -1);
        new_id[0] = 0;
        std::vector<std::unique_ptr<Step>> steps;
        std::vector<std::vector<int>> inputs;
        for (size_t i = 0; i < steps_.size(); ++i) {
            const int v = static_cast<int>(i) + 1;
            if (std::find(dead.begin(), dead.end(), v) != dead.end()) continue;
            for (int& u : inputs_[i]) {
                BNN_CHECK(new_id[u] >= 0, "infer::Graph::drop_dead: step ", i, " reads removed value ", u);
                u = new_id[u];
            }
            steps.push_back(std::move(steps_[i]));
            inputs.push_back(std::move(inputs_[i]));
            new_id[v] = static_cast<int>(steps.size());
        }
        BNN_CHECK(new_id[output_value_] >= 0, "infer::Graph::drop_dead: the output was removed");
        output_value_ = new_id[output_value_];
        steps_ = std::move(steps);
        inputs_ = std::move(inputs);
        planned_ = Shape{};
    }

    /// The step producing value v (v >= 1), and the inputs it reads.
    Step& producer(int v) { return *steps_.at(v - 1); }
    std::vector<int>& producer_inputs(int v) { return inputs_.at(v - 1); }
    /// Which value run() returns (the last step's by default).
    void set_output(int v) { output_value_ = v; }
    int output() const { return output_value_; }

private:
    /// Both run()s: plans when the shape or the thread count changed, then runs the steps.
    const Tensor<float>& run_on(const Shape& shape, const float* input) {
        if (!(shape == planned_) || num_threads() != planned_threads_) plan(shape);
        for (int v : input_views_) ptr_[v] = const_cast<float*>(input);  // read only: never in place
        // One parallel region for the whole call: the steps' passes go to threads that wait
        // for them, rather than each opening a region (bnn::with_thread_team).
        with_thread_team(planned_threads_, [&] { run_steps(); });
        if (profiling_) ++profiled_calls_;
        return output_tensor_;
    }

    void run_steps() {
        for (size_t i = 0; i < steps_.size(); ++i) {
            Step& s = *steps_[i];
            if (s.is_view()) continue;
            const float** args = args_.data() + arg_offset_[i];
            for (size_t k = 0; k < inputs_[i].size(); ++k) args[k] = ptr_[inputs_[i][k]];
            if (!profiling_) {
                s.run(args, ptr_[i + 1]);
            } else {
                const auto t0 = std::chrono::steady_clock::now();
                s.run(args, ptr_[i + 1]);
                profile_[s.kind()] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
            }
        }
    }

    int root(int v) const { return v == 0 || !steps_[v - 1]->is_view() ? v : root(inputs_[v - 1][0]); }

    void assign_buffers() {
        const int values = static_cast<int>(steps_.size()) + 1;
        const int n = static_cast<int>(steps_.size());
        std::vector<int> last(values, -1);
        for (int i = 0; i < n; ++i)
            for (int v : inputs_[i]) last[root(v)] = std::max(last[root(v)], i);
        const int out_root = root(output_value_);
        last[out_root] = n;  // the output outlives every step

        std::vector<int> buffer_of(values, -1);
        std::vector<int64_t> sizes;
        std::vector<int> free_list;
        for (int i = 0; i < n; ++i) {
            if (steps_[i]->is_view()) continue;
            const int v = i + 1;
            const int64_t need = std::max<int64_t>(1, shapes_[v].numel());
            int b = -1;
            const int k = steps_[i]->in_place_input();
            if (k >= 0 && v != out_root) {
                const int r = root(inputs_[i][k]);
                if (r != 0 && last[r] == i && r != out_root) b = buffer_of[r];
            }
            if (b < 0 && v != out_root && !free_list.empty()) {
                // The smallest free buffer that holds it, else the largest (which then grows).
                auto rank = [&](int f) { return sizes[f] >= need ? sizes[f] - need : INT64_MAX - sizes[f]; };
                const auto best = std::min_element(free_list.begin(), free_list.end(),
                                                   [&](int a, int c) { return rank(a) < rank(c); });
                b = *best;
                free_list.erase(best);
            }
            if (b < 0) {
                b = static_cast<int>(sizes.size());
                sizes.push_back(0);
            }
            sizes[b] = std::max(sizes[b], need);
            buffer_of[v] = b;
            for (int u : inputs_[i]) {
                const int r = root(u);
                if (r != 0 && last[r] == i && buffer_of[r] != b &&
                    std::find(free_list.begin(), free_list.end(), buffer_of[r]) == free_list.end())
                    free_list.push_back(buffer_of[r]);
            }
            if (last[v] < 0 && v != out_root) free_list.push_back(b);  // read by nobody
        }
        buffers_.clear();
        for (int64_t s : sizes) buffers_.push_back(Tensor<float>::empty(Shape{s}));
        ptr_.assign(values, nullptr);
        input_views_.clear();
        for (int v = 0; v < values; ++v) {
            const int r = root(v);
            if (r == 0) input_views_.push_back(v);
            else ptr_[v] = buffers_[buffer_of[r]].data();
        }
        // The output root's buffer is its own, never handed to another value.
        BNN_CHECK(out_root != 0, "infer::Graph: the output is the input itself (the compiler adds a copy)");
        const Shape& out_shape = shapes_[output_value_];
        output_tensor_ = buffers_[buffer_of[out_root]].slice(0, out_shape.numel()).reshape(out_shape.dims());
        arg_offset_.assign(n, 0);
        size_t total = 0;
        for (int i = 0; i < n; ++i) {
            arg_offset_[i] = total;
            total += inputs_[i].size();
        }
        args_.assign(std::max<size_t>(1, total), nullptr);
    }

    std::vector<std::unique_ptr<Step>> steps_;
    std::vector<std::vector<int>> inputs_;
    int output_value_ = 0;
    bool raw_input_ = false;
    // The plan.
    Shape planned_;
    int planned_threads_ = 0;
    std::vector<Shape> shapes_;
    std::vector<Tensor<float>> buffers_;
    std::vector<float*> ptr_;
    std::vector<int> input_views_;
    std::vector<size_t> arg_offset_;
    std::vector<const float*> args_;
    Tensor<float> output_tensor_;
    // Profiling.
    bool profiling_ = false;
    std::map<std::string, double> profile_;
    int64_t profiled_calls_ = 0;
};

}  // namespace bnn::infer
