// Tensor, Shape, Rng, Variable and the tape; the tensor block cache, and gradients adopted or
// overwritten instead of accumulated.
#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include <omp.h>

#include "bnn/autograd/variable.hpp"
#include "bnn/core/tensor.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/core/error.hpp"
#include "bnn/nn/module.hpp"
#include "bnn/ops/activation.hpp"
#include "bnn/ops/batch_norm.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/ops/sign.hpp"
#include "skip.hpp"

using namespace bnn;

TEST_CASE("Tensor is zero-filled, aligned and shares storage on copy", "[tensor]") {
    Tensor<float> t(Shape{2, 3, 4});
    REQUIRE(t.numel() == 24);
    REQUIRE(reinterpret_cast<uintptr_t>(t.data()) % 64 == 0);
    for (float v : t) REQUIRE(v == 0.f);
    Tensor<float> u = t;
    u.at({1, 2, 3}) = 5.f;
    REQUIRE(t[23] == 5.f);
    Tensor<float> c = t.clone();
    c[23] = 1.f;
    REQUIRE(t[23] == 5.f);
}

TEST_CASE("Tensor reshape is a view and infers -1", "[tensor]") {
    auto t = Tensor<float>::from_vector({2, 3}, {1, 2, 3, 4, 5, 6});
    auto r = t.reshape({3, -1});
    REQUIRE(r.shape() == Shape{3, 2});
    r.at({2, 1}) = 60.f;
    REQUIRE(t.at({1, 2}) == 60.f);
    REQUIRE_THROWS_AS(t.reshape({4, -1}), Error);
    REQUIRE_THROWS_AS(t.reshape({7}), Error);
    REQUIRE_THROWS_AS(t.reshape({-1, -1}), Error);
}

TEST_CASE("Tensor slice views rows of the first dimension", "[tensor]") {
    auto t = Tensor<int32_t>::from_vector({3, 2}, {0, 1, 2, 3, 4, 5});
    auto s = t.slice(1, 3);
    REQUIRE(s.shape() == Shape{2, 2});
    REQUIRE(s.at({0, 0}) == 2);
    s.at({1, 1}) = 50;
    REQUIRE(t[5] == 50);
    REQUIRE_THROWS_AS(t.slice(2, 4), Error);
}

TEST_CASE("Tensor misuse raises bnn::Error with the shapes in the message", "[tensor]") {
    Tensor<float> t(Shape{2, 2});
    REQUIRE_THROWS_WITH(t.at({2, 0}), Catch::Contains("[2, 2]"));
    REQUIRE_THROWS_AS(t.at({0}), Error);
    REQUIRE_THROWS_AS(Tensor<float>::from_vector({3}, {1.f, 2.f}), Error);
    Tensor<float> other(Shape{4});
    REQUIRE_THROWS_WITH(t.copy_from(other), Catch::Contains("[4]"));
    REQUIRE_THROWS_AS(Shape({2, -3}), Error);
}

TEST_CASE("Rng is deterministic and roughly normal", "[rng]") {
    Rng a(42), b(42), c(43);
    REQUIRE(a.next_u64() == b.next_u64());
    REQUIRE(a.next_u64() != c.next_u64());
    Rng r(7);
    double sum = 0, sq = 0;
    const int n = 200000;
    for (int i = 0; i < n; ++i) {
        double x = r.normal();
        sum += x;
        sq += x * x;
    }
    REQUIRE(std::abs(sum / n) < 0.01);
    REQUIRE(std::abs(sq / n - 1.0) < 0.02);
    std::vector<int> v{0, 1, 2, 3, 4, 5, 6, 7};
    r.shuffle(v.begin(), v.end());
    std::vector<int> sorted = v;
    std::sort(sorted.begin(), sorted.end());
    REQUIRE(sorted == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
}

namespace {
// y = a * b elementwise, a tiny op to exercise the tape without the ops/ layer.
Variable times(const Variable& a, const Variable& b) {
    Tensor<float> out = Tensor<float>::empty(a.shape());
    for (int64_t i = 0; i < out.numel(); ++i) out[i] = a.value()[i] * b.value()[i];
    Tensor<float> saved[2] = {a.value(), b.value()};  // backward closures capture what they need
    return make_result(out, {a, b},
                       [saved](const Tensor<float>& g, std::vector<Variable>& in) {
                           for (int k = 0; k < 2; ++k) {
                               if (!in[k].requires_grad()) continue;
                               const Tensor<float>& other = saved[1 - k];
                               auto& gi = in[k].grad();
                               for (int64_t i = 0; i < g.numel(); ++i) gi[i] += g[i] * other[i];
                           }
                       },
                       "times");
}
}  // namespace

namespace {
struct ScratchA;
struct ScratchB;
}  // namespace

TEST_CASE("thread_scratch: aligned, kept between calls, one buffer per tag", "[threads]") {
    float* a = thread_scratch<ScratchA>(10);
    REQUIRE(reinterpret_cast<uintptr_t>(a) % 64 == 0);
    a[9] = 3.f;
    REQUIRE(thread_scratch<ScratchA>(5) == a);  // no reallocation for a smaller request
    REQUIRE(a[9] == 3.f);
    float* b = thread_scratch<ScratchB>(10);
    REQUIRE(b != a);  // another tag: held buffers are not clobbered
    b[9] = 4.f;
    REQUIRE(a[9] == 3.f);
    double* big = thread_scratch<ScratchA, double>(1 << 12);
    REQUIRE(reinterpret_cast<uintptr_t>(big) % 64 == 0);
    big[(1 << 12) - 1] = 1.0;  // the whole requested range is usable
    REQUIRE(thread_scratch<ScratchA, double>(100) == big);
}

TEST_CASE("worth_threading and parallel_ranges split work evenly", "[threads]") {
    REQUIRE_FALSE(worth_threading(1000));
    REQUIRE(worth_threading(int64_t{1} << 20));
    // Catch2 is not thread safe: record on the threads, check afterwards.
    std::vector<int> hits(103, 0);
    std::vector<int64_t> share(3, -1);
    parallel_ranges(103, 3, [&](int t, int64_t b, int64_t e) {
        share[t] = e - b;
        for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    for (int64_t s : share) REQUIRE((s == 34 || s == 35));
    REQUIRE(hits == std::vector<int>(103, 1));
}

TEST_CASE("with_thread_team: passes run on the team's threads, nested ones inline, errors reach the caller",
          "[threads]") {
    const int threads_before = num_threads();
    set_num_threads(2);
    // Catch2 is not thread safe: record on the threads, check afterwards.
    constexpr int kPasses = 2000;
    std::vector<int> hits(kPasses * 7, 0), share_thread(kPasses * 2, -1), nested_hits(kPasses * 2 * 5, 0);
    std::vector<char> in_pass(kPasses * 2, 0);
    bool leader_outside_pass = true;
    with_thread_team(2, [&] {
        for (int pass = 0; pass < kPasses; ++pass) {
            leader_outside_pass = leader_outside_pass && !in_parallel_pass();
            parallel_ranges(7, 2, [&](int t, int64_t b, int64_t e) {
                for (int64_t i = b; i < e; ++i) ++hits[pass * 7 + i];
                share_thread[pass * 2 + t] = omp_get_thread_num();
                in_pass[pass * 2 + t] = in_parallel_pass();
                // A pass inside a share runs on the share's thread, as a nested region would.
                parallel_ranges(5, 2, [&](int, int64_t nb, int64_t ne) {
                    for (int64_t i = nb; i < ne; ++i) ++nested_hits[(pass * 2 + t) * 5 + i];
                });
            });
        }
    });
    REQUIRE(leader_outside_pass);
    REQUIRE(hits == std::vector<int>(hits.size(), 1));
    REQUIRE(nested_hits == std::vector<int>(nested_hits.size(), 1));
    REQUIRE(in_pass == std::vector<char>(in_pass.size(), 1));
    int on_other_thread = 0;
    for (int pass = 0; pass < kPasses; ++pass) {
        REQUIRE(share_thread[pass * 2] == 0);
        on_other_thread += share_thread[pass * 2 + 1] == 1;
    }
    REQUIRE(on_other_thread == kPasses);  // libgomp gives the two threads asked for on any machine
    // An error on the leader ends the team and reaches the caller; the next team works.
    REQUIRE_THROWS_WITH(with_thread_team(2, [&] {
                            parallel_ranges(4, 2, [](int, int64_t, int64_t) {});
                            throw Error("stop here");
                        }),
                        "stop here");
    int sum = 0;
    with_thread_team(2, [&] { parallel_ranges(10, 2, [&](int t, int64_t b, int64_t e) { if (t == 0) sum = int(e - b); }); });
    REQUIRE(sum == 5);
    // An error in the leader's share waits for the other shares, then reaches the caller, who
    // may go on handing out passes.
    std::vector<int> other_share_done(2, 0);
    bool caught = false, leads_again = false;
    with_thread_team(2, [&] {
        try {
            parallel_ranges(2, 2, [&](int t, int64_t, int64_t) {
                if (t == 0) throw Error("in share 0");
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
                other_share_done[0] = 1;
            });
        } catch (const Error&) {
            caught = true;
            other_share_done[1] = other_share_done[0];  // read after run() returned
        }
        parallel_ranges(2, 2, [&](int t, int64_t, int64_t) {
            if (t == 1) leads_again = omp_get_thread_num() == 1;
        });
    });
    REQUIRE(caught);
    REQUIRE(other_share_done[1] == 1);
    REQUIRE(leads_again);
    // Teams on three program threads at once outnumber the cores here, so their threads sleep
    // between passes instead of spinning: every pass still runs each share once.
    std::vector<std::vector<int>> counts(3, std::vector<int>(500 * 4, 0));
    std::vector<std::thread> callers;
    for (int c = 0; c < 3; ++c)
        callers.emplace_back([&counts, c] {
            set_num_threads(2);
            with_thread_team(2, [&] {
                for (int pass = 0; pass < 500; ++pass)
                    parallel_ranges(4, 2, [&](int, int64_t b, int64_t e) {
                        for (int64_t i = b; i < e; ++i) ++counts[c][pass * 4 + i];
                    });
            });
        });
    for (auto& t : callers) t.join();
    for (const auto& c : counts) REQUIRE(c == std::vector<int>(c.size(), 1));
    set_num_threads(threads_before);
}

TEST_CASE("backward accumulates through shared inputs (residual-style reuse)", "[autograd]") {
    Variable x(Tensor<float>::from_vector({2}, {3.f, -2.f}), true);
    Variable w(Tensor<float>::from_vector({2}, {0.5f, 4.f}), false);
    // y = (x*w) * x  => dy/dx = 2*w*x
    Variable y = times(times(x, w), x);
    y.backward(Tensor<float>::full({2}, 1.f));
    REQUIRE(x.grad()[0] == Approx(2 * 0.5 * 3));
    REQUIRE(x.grad()[1] == Approx(2 * 4.0 * -2));
    REQUIRE_FALSE(w.has_grad());
}

TEST_CASE("the tape keeps no input value alive that no closure captured", "[autograd]") {
    Variable x(Tensor<float>::full({4}, 1.f), true);
    Variable y;
    {
        Variable h = times(x, x);  // h's value is captured by the next op's closure...
        Variable k = times(h, h);
        y = make_result(k.value().clone(), {k},
                        [](const Tensor<float>& g, std::vector<Variable>& in) {
                            for (int64_t i = 0; i < g.numel(); ++i) in[0].grad()[i] += g[i];
                        },
                        "copy");  // ...but k's is not: only y's node refers to k
        REQUIRE_FALSE(y.node()->inputs[0].value().defined());  // the node holds no value
        REQUIRE(y.node()->inputs[0].shape() == Shape{4});     // only what routing needs
    }
    y.backward(Tensor<float>::full({4}, 1.f));
    REQUIRE(x.grad()[0] == Approx(4.f));  // d(x^4)/dx at 1
}

TEST_CASE("NoGradGuard and frozen inputs record nothing", "[autograd]") {
    Variable x(Tensor<float>::full({3}, 2.f), true);
    Variable frozen(Tensor<float>::full({3}, 2.f), false);
    REQUIRE(times(frozen, frozen).is_leaf());
    {
        NoGradGuard guard;
        Variable y = times(x, x);
        REQUIRE(y.is_leaf());
        REQUIRE_FALSE(y.requires_grad());
    }
    REQUIRE_FALSE(times(x, x).is_leaf());
    REQUIRE_FALSE(times(x, x).detach().requires_grad());
}

TEST_CASE("backward needs a scalar or a seed of the right shape", "[autograd]") {
    Variable x(Tensor<float>::full({3}, 2.f), true);
    Variable y = times(x, x);
    REQUIRE_THROWS_AS(y.backward(), Error);
    REQUIRE_THROWS_AS(y.backward(Tensor<float>::full({2}, 1.f)), Error);
    Variable c(Tensor<float>::full({1}, 1.f), false);
    REQUIRE_THROWS_AS(c.backward(), Error);
}

/// x -> times(x, x) -> times(h, h) -> "copy": three nodes, two op names.
Variable fourth_power_graph(const Variable& x) {
    Variable h = times(x, x);
    Variable k = times(h, h);
    return make_result(k.value().clone(), {k},
                       [](const Tensor<float>& g, std::vector<Variable>& in) {
                           for (int64_t i = 0; i < g.numel(); ++i) in[0].grad()[i] += g[i];
                       },
                       "copy");
}

TEST_CASE("TapeProfiler times every backward closure per op name, only while alive", "[autograd]") {
    Variable x(Tensor<float>::full({4}, 1.f), true);
    REQUIRE(TapeProfiler::active() == nullptr);
    fourth_power_graph(x).backward(Tensor<float>::full({4}, 1.f));  // off: nothing to record into
    REQUIRE(x.grad()[0] == Approx(4.f));

    for (ProfileClock clock : {ProfileClock::Wall, ProfileClock::ProcessCpu}) {
        TapeProfiler outer(clock);
        REQUIRE(TapeProfiler::active() == &outer);
        {
            TapeProfiler inner(clock);
            fourth_power_graph(x).backward(Tensor<float>::full({4}, 1.f));
            const auto& t = inner.backward_times();
            REQUIRE(t.size() == 2);
            REQUIRE(t.at("times").calls == 2);
            REQUIRE(t.at("copy").calls == 1);
            for (const auto& [name, time] : t) REQUIRE(time.seconds >= 0.0);
        }
        REQUIRE(outer.backward_times().empty());  // the inner profiler took those calls
        REQUIRE(TapeProfiler::active() == &outer);
        fourth_power_graph(x).backward(Tensor<float>::full({4}, 1.f));
        REQUIRE(outer.backward_times().at("times").calls == 2);
        outer.clear();
        REQUIRE(outer.backward_times().empty());
    }
    REQUIRE(TapeProfiler::active() == nullptr);
}

TEST_CASE("BackwardHook hears each leaf once, when no later node can add to its gradient", "[autograd]") {
    // y = (a * b) * (a * 5) + c: a is read by two nodes, so its gradient is final only after both ran.
    struct Recorder : BackwardHook {
        std::vector<std::pair<const void*, float>> ready;  // the leaf and its gradient when heard
        int nodes = 0, ends = 0;
        void on_leaf_ready(const Variable& leaf) override {
            Variable v = leaf;
            ready.emplace_back(leaf.id(), v.grad()[0]);
        }
        void on_node_done() override { ++nodes; }
        void on_backward_end() override { ++ends; }
    };
    Variable a(Tensor<float>::full({1}, 3.f), true), b(Tensor<float>::full({1}, 2.f), true);
    Variable c(Tensor<float>::full({1}, 1.f), true), frozen(Tensor<float>::full({1}, 5.f), false);
    REQUIRE(BackwardHook::active() == nullptr);
    {
        Recorder hook;
        REQUIRE(BackwardHook::active() == &hook);
        Variable y = ops::add(ops::mul(ops::mul(a, b), ops::mul(a, frozen)), c);
        y.backward();
        REQUIRE(hook.ends == 1);
        REQUIRE(hook.nodes == 4);
        REQUIRE(hook.ready.size() == 3);  // a, b, c once each; the frozen leaf never
        std::map<const void*, float> heard(hook.ready.begin(), hook.ready.end());
        REQUIRE(heard.size() == 3);
        // d/da of a*b*a*5 = 2*a*b*5 = 60: both writers had run when a was heard.
        REQUIRE(heard.at(a.id()) == 60.f);
        REQUIRE(heard.at(b.id()) == 45.f);
        REQUIRE(heard.at(c.id()) == 1.f);
        REQUIRE(a.grad()[0] == 60.f);
    }
    REQUIRE(BackwardHook::active() == nullptr);
}

TEST_CASE("Module names parameters and buffers with dots", "[module]") {
    struct Leaf : nn::Module {
        Leaf() {
            weight = register_parameter("weight", Tensor<float>::full({2}, 1.f));
            stats = register_buffer("running_mean", Tensor<float>({2}));
        }
        Variable weight;
        Tensor<float> stats;
        void constrain() override { weight.value()[0] = 0.f; }
    };
    struct Net : nn::Module {
        Net() {
            a = register_module("a", std::make_shared<Leaf>());
            b = register_module("b", std::make_shared<Leaf>());
        }
        std::shared_ptr<Leaf> a, b;
    };
    Net net;
    auto params = net.named_parameters();
    REQUIRE(params.size() == 2);
    REQUIRE(params[0].first == "a.weight");
    REQUIRE(params[1].first == "b.weight");
    REQUIRE(net.named_buffers()[1].first == "b.running_mean");
    REQUIRE(net.num_parameters() == 4);
    net.eval();
    REQUIRE_FALSE(net.b->is_training());
    net.apply_constraints();
    REQUIRE(net.a->weight.value()[0] == 0.f);
    net.set_requires_grad(false);
    REQUIRE_FALSE(net.b->weight.requires_grad());
    REQUIRE_THROWS_AS(net.forward(Variable()), Error);
}

// ---- the block cache and gradient sinks ---------------------------------------------------------

TEST_CASE("Tensor block cache reuses freed blocks, zero-fills on request, frees on a miss", "[alloc]") {
    auto& cache = detail::BlockCache::instance();
    cache.release();
    if (cache.limit() < (size_t{1} << 20)) BNN_SKIP("the block cache is switched off by BNN_TENSOR_CACHE_MB");
    const int64_t n = 100000;  // 400 KB: above the cache's minimum
    const float* first;
    {
        Tensor<float> t = Tensor<float>::full({n}, 7.f);
        first = t.data();
    }
    REQUIRE(cache.held_bytes() >= static_cast<size_t>(n) * sizeof(float));
    {
        Tensor<float> z({n});  // the same size: the freed block again, zero-filled
        REQUIRE(z.data() == first);
        bool all_zero = true;
        for (float v : z) all_zero = all_zero && v == 0.f;
        REQUIRE(all_zero);
        REQUIRE(cache.held_bytes() == 0);
    }
    // A miss with the cache full gives back idle memory before allocating.
    const size_t limit = cache.limit();
    cache.set_limit(static_cast<size_t>(n) * sizeof(float) + 100000);
    REQUIRE(cache.held_bytes() > 0);
    {
        Tensor<float> other = Tensor<float>::empty({n / 2});
        REQUIRE(cache.held_bytes() == 0);
    }
    cache.set_limit(limit);
    // Small tensors bypass the cache.
    const size_t before = cache.held_bytes();
    { Tensor<float> small({16}); }
    REQUIRE(cache.held_bytes() == before);
    cache.release();
    REQUIRE(cache.held_bytes() == 0);
}

TEST_CASE("adopt_grad takes a gradient only when there is none", "[grad_sink]") {
    Variable x(Tensor<float>::full({3}, 1.f), true);
    const Tensor<float> g = Tensor<float>::full({3}, 2.f);
    REQUIRE(x.adopt_grad(g));
    REQUIRE(x.grad().same_storage(g));
    REQUIRE_FALSE(x.adopt_grad(Tensor<float>::full({3}, 5.f)));
    REQUIRE(x.grad()[0] == 2.f);
    Variable y(Tensor<float>::full({3}, 1.f), true);
    REQUIRE_THROWS_AS(y.adopt_grad(Tensor<float>::full({4}, 1.f)), Error);
}

TEST_CASE("backward overwrites a fresh gradient exactly as it accumulates into a zero one", "[grad_sink]") {
    // Large enough for the block cache, which is first filled with NaN blocks of the same size:
    // an element a kernel forgot to write would show as NaN.
    const Shape shape{4, 8, 8, 160};
    Rng rng(21);
    const Tensor<float> x0 = Tensor<float>::randn(shape, rng), r = Tensor<float>::randn(shape, rng);
    Variable slope(Tensor<float>::uniform({160}, rng, 0.1f, 0.4f), true);
    Variable gate(Tensor<float>::uniform({4, 160}, rng, 0.2f, 1.f), true);
    Variable gamma(Tensor<float>::uniform({160}, rng, 0.5f, 1.5f), true), beta(Tensor<float>({160}), true);
    using Op = std::function<Variable(const Variable&)>;
    const std::vector<std::pair<const char*, Op>> ops_under_test{
        {"relu", [](const Variable& x) { return ops::relu(x); }},
        {"tanh", [](const Variable& x) { return ops::tanh(x); }},
        {"sign_ste", [](const Variable& x) { return ops::sign_ste(x); }},
        {"prelu", [&](const Variable& x) { return ops::prelu(x, slope); }},
        {"scaled_prelu", [&](const Variable& x) { return ops::scaled_prelu(x, gate, slope); }},
        {"batch_norm", [&](const Variable& x) { return ops::batch_norm(x, gamma, beta, {}, {}, true); }},
        {"batch_norm eval",
         [&](const Variable& x) {
             return ops::batch_norm(x, gamma, beta, Tensor<float>::full({160}, 0.1f), Tensor<float>::full({160}, 2.f),
                                    false);
         }},
        {"add", [](const Variable& x) { return ops::add(x, ops::scale(x, 0.5f)); }},
        {"sub", [](const Variable& x) { return ops::sub(ops::scale(x, 3.f), x); }},
        {"add to itself", [](const Variable& x) { return ops::add(x, x); }},
        {"sub from itself", [](const Variable& x) { return ops::scale(ops::sub(x, x), 1.f); }},
        {"residual", [](const Variable& x) { return ops::add(ops::sign_ste(x), ops::relu(x)); }},
    };
    for (const auto& [name, op] : ops_under_test) {
        INFO(name);
        auto grad_of_x = [&](bool pre_zeroed) {
            {  // dirty cached blocks, several alive at once so that several go back to the cache
                std::vector<Tensor<float>> junk;
                for (int k = 0; k < 6; ++k) junk.push_back(Tensor<float>::full(shape, std::nanf("")));
            }
            Variable x(x0.clone(), true);
            if (pre_zeroed) x.grad();  // an existing (zero) gradient: the accumulating path
            op(x).backward(r);
            return x.grad().to_vector();
        };
        const std::vector<float> fresh = grad_of_x(false), accumulated = grad_of_x(true);
        bool finite = true;
        for (float v : fresh) finite = finite && std::isfinite(v);
        REQUIRE(finite);
        REQUIRE(fresh == accumulated);
    }
}
