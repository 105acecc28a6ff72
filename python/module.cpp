// bnn._bnn, the extension behind the Python package bnn (python/bnn/__init__.py re-exports it;
// docs/python.md): a network file loaded (bnn.load), compiled (Network.compile) and run on numpy
// arrays or any buffer, read in place (Graph.run), and an image classified as the classify
// program does (Network.classify). The GIL is released while a file loads, a network compiles
// and a graph runs.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/data/transforms.hpp"
#include "bnn/infer/compile.hpp"
#include "trained_model.hpp"

namespace py = pybind11;

namespace bnn::python {

/// A missing file is FileNotFoundError, as open() raises it (bnn would say "cannot open").
void require_file(const std::filesystem::path& path) {
    std::error_code ec;
    if (std::filesystem::exists(path, ec)) return;
    errno = ENOENT;
    PyErr_SetFromErrnoWithFilename(PyExc_FileNotFoundError, path.string().c_str());
    throw py::error_already_set();
}

/// JSON (a file's metadata) as Python values.
py::object to_python(const nlohmann::json& j) {
    switch (j.type()) {
        case nlohmann::json::value_t::object: {
            py::dict d;
            for (const auto& [key, value] : j.items()) d[py::str(key)] = to_python(value);
            return d;
        }
        case nlohmann::json::value_t::array: {
            py::list l;
            for (const auto& value : j) l.append(to_python(value));
            return l;
        }
        case nlohmann::json::value_t::string: return py::str(j.get<std::string>());
        case nlohmann::json::value_t::boolean: return py::bool_(j.get<bool>());
        case nlohmann::json::value_t::number_integer: return py::int_(j.get<int64_t>());
        case nlohmann::json::value_t::number_unsigned: return py::int_(j.get<uint64_t>());
        case nlohmann::json::value_t::number_float: return py::float_(j.get<double>());
        default: return py::none();
    }
}


/// Sets the OpenMP threads of the calling thread for a scope (kernels read num_threads()).
class ThreadCount {
public:
    explicit ThreadCount(int n) : saved_(num_threads()) { set_num_threads(n); }
    ~ThreadCount() { set_num_threads(saved_); }
    ThreadCount(const ThreadCount&) = delete;
    ThreadCount& operator=(const ThreadCount&) = delete;

private:
    int saved_;
};

/// The name numpy gives a buffer format, for error messages.
std::string dtype_name(const std::string& format) {
    const std::string f = format.empty() ? "" : format.substr(format.find_first_not_of("@=<>!"));
    static const std::pair<const char*, const char*> names[] = {
        {"f", "float32"}, {"d", "float64"}, {"e", "float16"}, {"B", "uint8"}, {"b", "int8"}, {"h", "int16"},
        {"H", "uint16"}, {"i", "int32"}, {"I", "uint32"}, {"l", "int64"}, {"q", "int64"}, {"L", "uint64"},
        {"Q", "uint64"}, {"?", "bool"}};
    for (const auto& [code, name] : names)
        if (f == code) return format[0] == '>' || format[0] == '!' ? std::string("big-endian ") + name : name;
    return "format '" + format + "'";
}

/// The shape of a buffer a graph may read in place: 4 dimensions [N, H, W, C], C-contiguous, of
/// `dtype` (float32, or uint8 for an integer stem) in native byte order. Anything else is refused,
/// never copied or read with the wrong layout.
Shape input_shape_of(const py::buffer_info& info, bool raw) {
    const char* expected = raw ? "uint8" : "float32";
    const std::string found = dtype_name(info.format);
    BNN_CHECK(found == expected, "Graph.run: expected a ", expected, " array (",
              raw ? "raw images, 0..255, for an integer stem" : "normalized images", "), found ", found,
              raw ? "" : "; convert with x.astype(numpy.float32)");
    BNN_CHECK(info.ndim == 4, "Graph.run: expected 4 dimensions [N, H, W, C], found ", info.ndim);
    std::vector<int64_t> dims(info.shape.begin(), info.shape.end());
    int64_t stride = info.itemsize;
    for (int k = 3; k >= 0; --k) {
        BNN_CHECK(dims[k] > 0, "Graph.run: expected an input of at least one element in every dimension, found ",
                  Shape(dims).str());
        BNN_CHECK(dims[k] == 1 || info.strides[k] == stride, "Graph.run: expected a C-contiguous array ", Shape(dims).str(),
                  ", found strides (", info.strides[0], ", ", info.strides[1], ", ", info.strides[2], ", ",
                  info.strides[3], ") bytes; copy it with numpy.ascontiguousarray(x)");
        stride *= dims[k];
    }
    return Shape(dims);
}

/// A test hook: the next run of a graph waits, inside the call with the GIL released, until the
/// test releases it (at most 10 s), so the test can see what other threads can do meanwhile.
class RunPause {
public:
    void hold() {
        std::unique_lock lock(mutex_);
        entered_ = true;
        changed_.notify_all();
        changed_.wait_for(lock, std::chrono::seconds(10), [&] { return released_; });
    }
    void finish() {
        std::lock_guard lock(mutex_);
        finished_ = true;
        changed_.notify_all();
    }
    bool wait_until_running(double timeout) {
        py::gil_scoped_release nogil;
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, std::chrono::duration<double>(timeout), [&] { return entered_; });
    }
    void release() {
        std::lock_guard lock(mutex_);
        released_ = true;
        changed_.notify_all();
    }
    bool running() {
        std::lock_guard lock(mutex_);
        return entered_ && !finished_;
    }
    bool finished() {
        std::lock_guard lock(mutex_);
        return finished_;
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    bool entered_ = false, released_ = false, finished_ = false;
};

/// A compiled network: infer::Graph, run one call at a time (its buffers are its state), with
/// the thread count it was compiled for.
class Graph {
public:
    Graph(infer::Graph graph, Shape input_shape, int threads, std::string stem, std::string dense)
        : graph_(std::move(graph)),
          input_shape_(std::move(input_shape)),
          threads_(threads),
          stem_(std::move(stem)),
          dense_(std::move(dense)) {}

    py::array_t<float> run(const py::buffer& x) {
        const py::buffer_info info = x.request();  // held, with x, until the run returns
        const Shape shape = input_shape_of(info, graph_.takes_raw_images());
        std::unique_ptr<Tensor<float>> out;
        {
            py::gil_scoped_release nogil;
            std::lock_guard lock(mutex_);
            const std::shared_ptr<RunPause> pause = std::move(pause_);
            if (pause) pause->hold();
            ThreadCount threads(threads_);
            out = std::make_unique<Tensor<float>>(run_graph(shape, info.ptr).clone());  // overwritten by the next run
            if (pause) pause->finish();
        }
        const std::vector<py::ssize_t> dims(out->shape().dims().begin(), out->shape().dims().end());
        float* data = out->data();
        py::capsule owner(out.release(), [](void* t) { delete static_cast<Tensor<float>*>(t); });
        return py::array_t<float>(dims, data, owner);
    }

    /// Benchmark hook: the seconds of each of `repeats` runs on x timed in C++ around
    /// infer::Graph::run (the C++ call, which benchmarks/python_overhead.py sets the Python call against).
    std::vector<double> time_runs(const py::buffer& x, int repeats) {
        const py::buffer_info info = x.request();
        const Shape shape = input_shape_of(info, graph_.takes_raw_images());
        std::vector<double> seconds;
        py::gil_scoped_release nogil;
        std::lock_guard lock(mutex_);
        ThreadCount threads(threads_);
        for (int i = 0; i < repeats; ++i) {
            const auto start = std::chrono::steady_clock::now();
            run_graph(shape, info.ptr);
            seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
        }
        return seconds;
    }

    std::shared_ptr<RunPause> pause_next_run() {
        auto pause = std::make_shared<RunPause>();
        while_idle([&] { pause_ = pause; });
        return pause;
    }

    py::tuple input_shape() const { return py::tuple(py::cast(input_shape_.dims())); }
    py::tuple output_shape() {
        return py::tuple(py::cast(while_idle([&] { return graph_.output_shape().dims(); })));
    }
    int threads() const { return threads_; }
    const std::string& stem() const { return stem_; }
    const std::string& dense() const { return dense_; }
    size_t steps() const { return graph_.num_steps(); }
    std::string summary() {
        return while_idle([&] { return graph_.summary(); });
    }
    uintptr_t last_input() const { return last_input_; }

private:
    // f() between runs: a run on another thread may be re-planning the graph.
    template <class F>
    std::invoke_result_t<F> while_idle(F f) {
        py::gil_scoped_release nogil;
        std::lock_guard lock(mutex_);
        return f();
    }

    // The caller holds mutex_.
    const Tensor<float>& run_graph(const Shape& shape, const void* input) {
        last_input_ = reinterpret_cast<uintptr_t>(input);
        return graph_.takes_raw_images() ? graph_.run(shape, static_cast<const uint8_t*>(input))
                                         : graph_.run(shape, static_cast<const float*>(input));
    }

    infer::Graph graph_;
    Shape input_shape_;
    int threads_;
    std::string stem_, dense_;
    std::mutex mutex_;
    std::shared_ptr<RunPause> pause_;
    std::atomic<uintptr_t> last_input_ = 0;
};

/// A loaded network file (examples::load_network): the model and what its metadata says.
class Network {
public:
    explicit Network(const std::filesystem::path& path) : path_(path.string()) {
        require_file(path);
        py::gil_scoped_release nogil;
        try {
            net_ = examples::load_network(path_);
        } catch (const nlohmann::json::exception& e) {  // trainer metadata of the wrong type
            fail("'", path_, "' has unusable metadata: ", e.what());
        }
    }

    std::unique_ptr<Graph> compile(std::optional<std::vector<int64_t>> input_shape, std::optional<int> threads,
                                   const std::string& stem, const std::string& dense,
                                   std::optional<std::vector<float>> mean, std::optional<std::vector<float>> std) const {
        const infer::StemPrecision precision = infer::stem_precision(stem);
        BNN_CHECK(input_shape || net_.preprocessing, "Network.compile: '", path_,
                  "' does not say its input size (no trainer metadata): give input_shape=(N, H, W, C)");
        const Shape shape = input_shape ? Shape(*input_shape) : Shape(default_input_shape());
        BNN_CHECK(shape.rank() == 4, "Network.compile: expected input_shape (N, H, W, C), found ", shape.str());
        const int n = threads.value_or(num_threads());
        BNN_CHECK(n >= 1, "Network.compile: expected threads >= 1, found ", n);
        infer::CompileOptions options;
        options.stem = precision;
        options.dense = infer::dense_precision(dense);
        if (infer::reads_bytes(precision)) {
            BNN_CHECK((mean && std) || net_.preprocessing, "Network.compile: an integer stem folds the input "
                      "normalization in, and '", path_, "' does not say it (no trainer metadata): give mean= and std=");
            options.mean = mean ? *mean : net_.preprocessing->mean;
            options.std = std ? *std : net_.preprocessing->std;
        }
        py::gil_scoped_release nogil;
        ThreadCount scope(n);
        return std::make_unique<Graph>(infer::compile(*net_.model, shape, options), shape, n, stem, dense);
    }

    /// classify's preprocessing: the trainer's, or for a file without it the image scaled to
    /// [0, 1] at `size` with `channels`.
    examples::Preprocessing preprocessing(std::optional<int64_t> size, int64_t channels) const {
        if (net_.preprocessing) return *net_.preprocessing;
        BNN_CHECK(size && *size >= 1 && *size <= 4096, "'", path_, "' has no trainer metadata (input size, "
                  "normalization, class names): give size= (1 to 4096) and channels=");
        BNN_CHECK(channels >= 1 && channels <= 4, "channels: expected 1 to 4, found ", channels);
        return examples::plain_preprocessing(*size, channels, 0);
    }

    /// The image as classify feeds it to the network; warns what was changed to make it fit.
    Tensor<uint8_t> image_bytes(const std::filesystem::path& image, const examples::Preprocessing& p) const {
        require_file(image);
        examples::ImageInput in;
        {
            py::gil_scoped_release nogil;
            in = examples::image_input(image.string(), p);
        }
        if (!in.note.empty() && PyErr_WarnEx(PyExc_UserWarning, in.note.c_str(), 1) != 0) throw py::error_already_set();
        return in.bytes;
    }

    py::array_t<uint8_t> read_image(const std::filesystem::path& image, std::optional<int64_t> size,
                                    int64_t channels) const {
        const Tensor<uint8_t> bytes = image_bytes(image, preprocessing(size, channels));
        return py::array_t<uint8_t>(std::vector<py::ssize_t>(bytes.shape().dims().begin(), bytes.shape().dims().end()),
                                    bytes.data());
    }

    py::array_t<float> normalize(const py::buffer& images) const {
        BNN_CHECK(net_.preprocessing, "Network.normalize: '", path_, "' does not say its normalization (no trainer "
                  "metadata): the network takes what it was trained on");
        const py::buffer_info info = images.request();
        BNN_CHECK(dtype_name(info.format) == "uint8", "Network.normalize: expected uint8 images, found ",
                  dtype_name(info.format));
        const py::array_t<uint8_t> contiguous = py::array_t<uint8_t, py::array::c_style>::ensure(images);
        const std::vector<int64_t> dims(info.shape.begin(), info.shape.end());
        Tensor<uint8_t> bytes = Tensor<uint8_t>::empty(Shape(dims));
        std::copy(contiguous.data(), contiguous.data() + contiguous.size(), bytes.data());
        const Tensor<float> x = data::normalize(bytes, examples::input_normalization(*net_.preprocessing));
        return py::array_t<float>(std::vector<py::ssize_t>(dims.begin(), dims.end()), x.data());
    }

    /// classify's answer: the `top` most probable classes of the image, with their probability.
    std::vector<std::pair<std::string, double>> classify(const std::filesystem::path& image, int64_t top,
                                                         const std::string& stem, const std::string& dense,
                                                         std::optional<int64_t> size, int64_t channels) const {
        BNN_CHECK(top >= 1, "Network.classify: expected top >= 1, found ", top);
        const infer::CompileOptions precision{.stem = infer::stem_precision(stem), .dense = infer::dense_precision(dense)};
        examples::Preprocessing p = preprocessing(size, channels);
        const Tensor<uint8_t> bytes = image_bytes(image, p);
        Tensor<float> logits;
        {
            py::gil_scoped_release nogil;
            size_t steps = 0;
            logits = examples::logits_of(*net_.model, bytes, p, precision, steps);
        }
        const int64_t K = logits.dim(1);
        if (p.class_names.empty()) p = examples::plain_preprocessing(p.input_size, p.channels, K);
        BNN_CHECK(static_cast<int64_t>(p.class_names.size()) == K, K, " outputs but ", p.class_names.size(),
                  " class names in '", path_, "'");
        std::vector<std::pair<std::string, double>> ranked;
        for (const examples::RankedClass& c : examples::top_classes(logits.data(), K, top))
            ranked.emplace_back(p.class_names[c.index], c.probability);
        return ranked;
    }

    py::dict metadata() const {
        py::dict d = to_python(net_.metadata);
        d.attr("pop")("module_tree", py::none());  // the network itself, which the Network is
        return d;
    }
    py::object class_names() const {
        return net_.preprocessing ? py::cast(net_.preprocessing->class_names) : py::none();
    }
    py::object input_shape() const {
        return net_.preprocessing ? py::object(py::tuple(py::cast(default_input_shape()))) : py::none();
    }
    bool deployed() const { return net_.deployed; }
    const std::string& path() const { return path_; }
    std::string repr() const {
        return "<bnn.Network '" + path_ + "': " + (net_.deployed ? std::string("deployment file") : net_.description) +
               ">";
    }

private:
    std::vector<int64_t> default_input_shape() const {
        const auto& p = *net_.preprocessing;
        return {1, p.input_size, p.input_size, p.channels};
    }

    std::string path_;
    examples::Network net_;
};

}  // namespace bnn::python

PYBIND11_MODULE(_bnn, m) {
    using namespace bnn::python;
    using namespace pybind11::literals;
    m.doc() = "bnn's inference from Python: bnn.load(path) -> Network, Network.compile(...) -> Graph, Graph(x).";
    m.attr("__version__") = BNN_VERSION;
    // ValueError: bnn raises it for input that is not what it must be (a dtype, shape, layout,
    // option or file content), which is what ValueError means in Python.
    py::register_exception<bnn::Error>(m, "Error", PyExc_ValueError);

    py::class_<RunPause, std::shared_ptr<RunPause>>(m, "_RunPause", "Test hook of Graph._pause_next_run().")
        .def("wait_until_running", &RunPause::wait_until_running, "timeout"_a,
             "Waits (GIL released) until the paused run has begun; False after `timeout` seconds.")
        .def("release", &RunPause::release, "Lets the paused run go on.")
        .def_property_readonly("running", &RunPause::running, "The paused run has begun and not finished.")
        .def_property_readonly("finished", &RunPause::finished, "The paused run has finished.");

    py::class_<Graph>(m, "Graph", R"(A network compiled for inference (Network.compile).

Call it, or its run(), on images [N, H, W, C]: a C-contiguous float32 array normalized as the
network was trained (uint8 raw images for stem="int16" or "int8"), a numpy array or any object with the
buffer protocol. The input is read in place, never copied; the logits come back as a new
float32 array [N, classes]. The GIL is released while it runs. A graph runs one call at a time
(calls from several threads wait for each other): give each thread its own graph to use several
cores at once. Another input shape than the compiled one is planned for on its first call.)")
        .def("run", &Graph::run, "x"_a, "The logits [N, classes] of images x [N, H, W, C] (see the class).")
        .def("__call__", &Graph::run, "x"_a, "Same as run(x).")
        .def_property_readonly("input_shape", &Graph::input_shape, "The (N, H, W, C) it was compiled for.")
        .def_property_readonly("output_shape", &Graph::output_shape, "The shape of its last output.")
        .def_property_readonly("threads", &Graph::threads, "Threads each run uses.")
        .def_property_readonly("stem", &Graph::stem, "'fp32' (normalized float input), 'int16' or 'int8' (uint8 images).")
        .def_property_readonly("dense", &Graph::dense, "'fp32' or 'int8': the 1x1 convolutions and Linear layers.")
        .def_property_readonly("steps", &Graph::steps, "Number of fused inference steps.")
        .def("summary", &Graph::summary, "The steps, one a line, with their module paths and shapes.")
        .def_property_readonly("_last_input_address", &Graph::last_input,
                               "Address of the memory the last run read (the input's own, as it is not copied).")
        .def("_time_runs", &Graph::time_runs, "x"_a, "repeats"_a,
             "Benchmark hook: seconds of each of `repeats` runs on x, timed in C++ around the graph's run.")
        .def("_pause_next_run", &Graph::pause_next_run,
             "Test hook: the next run waits, inside the call with the GIL released, until released.");

    py::class_<Network>(m, "Network", R"(A network file loaded by bnn.load: a deployment file or a trainer checkpoint.

compile() makes a Graph of it; classify() classifies an image file exactly as the classify
program does. A graph keeps no reference to its network.)")
        .def("compile", &Network::compile, "input_shape"_a = py::none(), py::kw_only(), "threads"_a = py::none(),
             "stem"_a = "fp32", "dense"_a = "fp32", "mean"_a = py::none(), "std"_a = py::none(),
             R"(Compiles the network for inputs of input_shape (N, H, W, C).

input_shape: defaults to (1, S, S, C) from the trainer's metadata.
threads: threads each run uses (default: OpenMP's, every core unless OMP_NUM_THREADS says).
stem: "fp32" runs the first convolution on normalized float32 input; "int16" on the raw uint8
    image, with the normalization (mean, std; default the metadata's) folded into its weights;
    "int8" the same with the weights rounded to 255 levels (faster where the CPU has VNNI).
dense: "fp32", or "int8" for the 1x1 convolutions (shortcut projections) and Linear layers (the
    classifier) in int8: weights per output channel, each input row with a step of its own
    (faster where the CPU has AVX-512 VNNI; the logits move, docs/performance.md).
Returns a Graph. Raises bnn.Error for a network or option it cannot compile.)")
        .def("classify", &Network::classify, "image"_a, "top"_a = 5, py::kw_only(), "stem"_a = "fp32",
             "dense"_a = "fp32", "size"_a = py::none(), "channels"_a = 3,
             R"(The top most probable classes of an image file (PNG, JPEG, BMP, PNM), as the classify program
prints them: a list of (class name, probability), most probable first.

The image is converted to the network's channels, resized to its image size and padded to its
input size (a UserWarning says what was changed), normalized as in training and run through a
graph compiled with `stem` and `dense`. size and channels: the input for a deployment file without the
trainer's metadata (classes are then named "class k").)")
        .def("read_image", &Network::read_image, "image"_a, py::kw_only(), "size"_a = py::none(), "channels"_a = 3,
             "The image file as classify feeds it to the network: uint8 [1, S, S, C] (see classify).")
        .def("normalize", &Network::normalize, "images"_a,
             "uint8 images [..., C] normalized as the training data were, bit for bit: float32 of the same shape.")
        .def_property_readonly("metadata", &Network::metadata,
                               "The file's metadata as a dict (the trainer's entries: class_names, mean, std, "
                               "image_size, input_size, ...), values parsed from JSON where they are JSON.")
        .def_property_readonly("class_names", &Network::class_names, "The class names, or None without trainer metadata.")
        .def_property_readonly("input_shape", &Network::input_shape,
                               "(1, S, S, C) from the trainer's metadata, or None without it.")
        .def_property_readonly("deployed", &Network::deployed, "True for a deployment file, False for a checkpoint.")
        .def_property_readonly("path", &Network::path, "The file it was loaded from.")
        .def("__repr__", &Network::repr);

    m.def(
        "load", [](const std::filesystem::path& path) { return std::make_unique<Network>(path); }, "path"_a,
        R"(Loads a network file: a deployment file (any architecture: it describes its own network) or a
trainer checkpoint (the ResNet-18 its metadata names). Returns a Network.

Raises FileNotFoundError for a missing file and bnn.Error for a file bnn cannot use, with bnn's
message naming what is wrong. The GIL is released while the file loads.)");
}
