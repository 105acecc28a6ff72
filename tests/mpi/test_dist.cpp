// Data-parallel training (include/bnn/dist), run under `mpirun -np 2`: every rank runs every
// test case, and the collectives inside them pair up across ranks. The single-process reference
// of a computation runs on each rank too, on ProcessGroup::self() with the whole batch.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "bnn/core/rng.hpp"
#include "bnn/dist/dist.hpp"
#include "bnn/losses/cross_entropy.hpp"
#include "bnn/nn/activation.hpp"
#include "bnn/nn/conv2d.hpp"
#include "bnn/nn/flatten.hpp"
#include "bnn/nn/linear.hpp"
#include "bnn/nn/pool.hpp"
#include "bnn/nn/sequential.hpp"
#include "bnn/ops/elementwise.hpp"
#include "bnn/ops/reduce.hpp"
#include "bnn/optim/sgd.hpp"
#include "bnn/train/train_step.hpp"

using namespace bnn;
using dist::ProcessGroup;

namespace {

enum class Norm { none, sync };

/// A small convolutional classifier, with or without synchronised batch norm over `group`.
std::unique_ptr<nn::Sequential> make_net(ProcessGroup& group, Norm norm, uint64_t seed) {
    manual_seed(seed);
    auto net = std::make_unique<nn::Sequential>();
    net->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 3, .out_channels = 8, .padding = 1, .bias = norm == Norm::none});
    if (norm == Norm::sync) net->add<dist::SyncBatchNorm2d>(group, 8);
    net->add<nn::ReLU>();
    net->add<nn::Conv2d>(nn::Conv2dOptions{.in_channels = 8, .out_channels = 8, .stride = 2, .padding = 1});
    if (norm == Norm::sync) net->add<dist::SyncBatchNorm2d>(group, 8);
    net->add<nn::ReLU>();
    net->add<nn::GlobalAvgPool>();
    net->add<nn::Flatten>();
    net->add<nn::Linear>(8, 5);
    return net;
}

struct Data {
    Tensor<float> images;  // [N, 8, 8, 3]
    std::vector<int32_t> labels;
};
Data make_data(int64_t n, uint64_t seed) {
    Rng rng(seed);
    Data d{Tensor<float>(Shape{n, 8, 8, 3}), {}};
    for (int64_t i = 0; i < d.images.numel(); ++i) d.images[i] = rng.uniform() * 2.f - 1.f;
    for (int64_t i = 0; i < n; ++i) d.labels.push_back(static_cast<int32_t>(rng.uniform() * 5) % 5);
    return d;
}

/// Trains `steps` SGD steps on consecutive global batches of `batch` rows, each rank on its
/// shard of every batch, gradients averaged by a GradientSync over `group`.
std::vector<Tensor<float>> train_steps(ProcessGroup& group, Norm norm, const Data& data, int64_t batch, int steps,
                                 dist::GradientSyncStats* stats = nullptr) {
    auto net = make_net(group, norm, 7);
    optim::SGD opt(net->parameters(), {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-4f});
    dist::GradientSync sync(group, net->parameters(), {.bucket_bytes = 16});
    for (int s = 0; s < steps; ++s) {
        data::Batch b;
        b.images = data.images.slice(s * batch, (s + 1) * batch);
        b.labels.assign(data.labels.begin() + s * batch, data.labels.begin() + (s + 1) * batch);
        dist::keep_shard(b, group.rank(), group.size());
        train::train_step(*net, opt, train::StepBatch{b.images, b.labels, {}});
    }
    if (stats) *stats = sync.stats();
    std::vector<Tensor<float>> out;
    for (auto& [name, p] : net->named_parameters()) out.push_back(p.value().clone());
    for (auto& [name, b] : net->named_buffers()) out.push_back(b.clone());
    return out;
}

double max_difference(const std::vector<Tensor<float>>& a, const std::vector<Tensor<float>>& b) {
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (size_t t = 0; t < a.size(); ++t) {
        REQUIRE(a[t].shape() == b[t].shape());
        for (int64_t i = 0; i < a[t].numel(); ++i)
            worst = std::max(worst, static_cast<double>(std::fabs(a[t][i] - b[t][i])));
    }
    return worst;
}

/// True when every rank holds bit for bit rank 0's tensors.
bool same_on_every_rank(ProcessGroup& group, const std::vector<Tensor<float>>& mine) {
    std::vector<Tensor<float>> root;
    for (const auto& t : mine) root.push_back(t.clone());
    dist::broadcast_tensors(group, root);
    std::vector<double> differing{max_difference(mine, root) == 0 ? 0.0 : 1.0};
    dist::sum_over_ranks(group, differing);
    return differing[0] == 0;
}

}  // namespace

TEST_CASE("the test runs as a group of two ranks started by mpirun", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    REQUIRE(dist::built_with_mpi());
    REQUIRE(dist::launched_by_mpirun());
    REQUIRE(world.size() == 2);
    REQUIRE(world.local_size() == 2);
    REQUIRE(world.local_rank() == world.rank());
    REQUIRE(ProcessGroup::self().size() == 1);
}

TEST_CASE("2 ranks x B/2 end where 1 process x B does after several steps (no batch norm)", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    const Data data = make_data(4 * 16, 11);
    dist::GradientSyncStats stats;
    const auto together = train_steps(world, Norm::none, data, 16, 4, &stats);
    ProcessGroup self = ProcessGroup::self();
    const auto alone = train_steps(self, Norm::none, data, 16, 4);
    // The ranks sum their halves' gradients in another order than one process sums the whole.
    CHECK(max_difference(together, alone) < 2e-5);
    CHECK(same_on_every_rank(world, together));
    // One bucket per parameter (5), every all-reduce started while the backward was running.
    CHECK(stats.buckets == 5);
    CHECK(stats.buckets_started_in_backward == stats.buckets);
    CHECK(stats.bytes_per_step == (8 * 27 + 8 + 8 * 72 + 5 * 8 + 5) * 4);
}

TEST_CASE("2 ranks x B/2 end where 1 process x B does after several steps (synchronised batch norm)", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    const Data data = make_data(4 * 16, 12);
    const auto together = train_steps(world, Norm::sync, data, 16, 4);
    ProcessGroup self = ProcessGroup::self();
    const auto alone = train_steps(self, Norm::sync, data, 16, 4);
    CHECK(max_difference(together, alone) < 2e-5);  // running statistics included
    CHECK(same_on_every_rank(world, together));
}

TEST_CASE("without synchronised statistics a batch-norm network differs, so the test above can fail", "[dist]") {
    // The same run with local statistics: each rank normalizes its half by its own mean.
    ProcessGroup& world = ProcessGroup::world();
    const Data data = make_data(4 * 16, 12);
    const auto together = train_steps(world, Norm::sync, data, 16, 4);
    ProcessGroup self = ProcessGroup::self();
    // Each rank alone on its own shard (self group): the statistics of B/2 rows.
    const auto local = [&] {
        auto net = make_net(self, Norm::sync, 7);
        optim::SGD opt(net->parameters(), {.lr = 0.1f, .momentum = 0.9f, .weight_decay = 1e-4f});
        dist::GradientSync sync(world, net->parameters());
        for (int s = 0; s < 4; ++s) {
            data::Batch b;
            b.images = data.images.slice(s * 16, (s + 1) * 16);
            b.labels.assign(data.labels.begin() + s * 16, data.labels.begin() + (s + 1) * 16);
            dist::keep_shard(b, world.rank(), world.size());
            train::train_step(*net, opt, train::StepBatch{b.images, b.labels, {}});
        }
        std::vector<Tensor<float>> out;
        for (auto& [name, p] : net->named_parameters()) out.push_back(p.value().clone());
        return out;
    }();
    std::vector<Tensor<float>> together_params(together.begin(), together.begin() + static_cast<long>(local.size()));
    CHECK(max_difference(together_params, local) > 1e-4);
}

TEST_CASE("a parameter without a gradient on every rank keeps none; with one on some rank it is averaged", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    Variable used(Tensor<float>::full({2}, 1.f), true), rank1_only(Tensor<float>::full({2}, 1.f), true);
    Variable unused(Tensor<float>::full({2}, 1.f), true);
    dist::GradientSync sync(world, {used, rank1_only, unused}, {.bucket_bytes = 1 << 20});  // one bucket
    REQUIRE(sync.num_buckets() == 1);
    Variable x(Tensor<float>::full({2}, static_cast<float>(2 + world.rank())));  // 2 on rank 0, 3 on rank 1
    Variable loss = ops::sum(ops::mul(used, x));
    if (world.rank() == 1) loss = ops::add(loss, ops::sum(ops::mul(rank1_only, x)));
    loss.backward();
    CHECK(used.grad()[0] == 2.5f);         // (2 + 3) / 2
    CHECK(rank1_only.has_grad());          // on rank 0 too
    CHECK(rank1_only.grad()[1] == 1.5f);   // (0 + 3) / 2
    CHECK_FALSE(unused.has_grad());        // the optimiser skips it, as one process would
}

TEST_CASE("rank 0's model reaches every rank", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    auto net = make_net(world, Norm::sync, 100 + static_cast<uint64_t>(world.rank()));  // differs per rank
    std::vector<Tensor<float>> before;
    for (auto& [name, p] : net->named_parameters()) before.push_back(p.value().clone());
    dist::broadcast_module(world, *net);
    std::vector<Tensor<float>> after;
    for (auto& [name, p] : net->named_parameters()) after.push_back(p.value().clone());
    CHECK(same_on_every_rank(world, after));
    CHECK((max_difference(before, after) == 0) == world.is_root());
}

TEST_CASE("buffers become their mean over the ranks", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    ProcessGroup self = ProcessGroup::self();
    dist::SyncBatchNorm2d bn(self, 3);
    for (int64_t c = 0; c < 3; ++c) bn.running_mean[c] = static_cast<float>(world.rank() * 4 + c);  // 0 1 2 | 4 5 6
    dist::average_buffers(world, bn);
    for (int64_t c = 0; c < 3; ++c) CHECK(bn.running_mean[c] == static_cast<float>(2 + c));
    CHECK(bn.running_var[0] == 1.f);
}

TEST_CASE("the sampler gives every image to exactly one rank once per epoch", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    const int64_t n = 103, batch = 10;  // a final batch of 3 rows over 2 ranks
    dist::DistributedSampler sampler(n, batch, 5, world.rank(), world.size());
    REQUIRE(sampler.batches_per_epoch() == 11);
    for (int64_t epoch : {0, 1}) {
        const auto order = sampler.epoch_order(epoch);
        std::vector<int64_t> seen(static_cast<size_t>(n), 0);
        for (int64_t b = 0; b < sampler.batches_per_epoch(); ++b)
            for (int64_t i : sampler.local_batch(order, b)) ++seen[static_cast<size_t>(i)];
        world.all_reduce_sum(seen.data(), n);
        for (int64_t i = 0; i < n; ++i) REQUIRE(seen[static_cast<size_t>(i)] == 1);
    }
    // The order depends on the epoch, the same on every rank.
    CHECK(sampler.epoch_order(0) != sampler.epoch_order(1));
    std::vector<int64_t> first = sampler.epoch_order(3);
    std::vector<int64_t> root = first;
    world.broadcast(root.data(), n * static_cast<int64_t>(sizeof(int64_t)));
    CHECK(first == root);
}

TEST_CASE("shards of a batch are consecutive, even and complete", "[dist]") {
    CHECK(dist::shard_of(10, 0, 2).begin == 0);
    CHECK(dist::shard_of(10, 0, 2).end == 5);
    CHECK(dist::shard_of(10, 1, 2).begin == 5);
    CHECK(dist::shard_of(3, 0, 4).size() == 0);
    int64_t total = 0;
    for (int r = 0; r < 4; ++r) total += dist::shard_of(3, r, 4).size();
    CHECK(total == 3);
    CHECK(dist::per_rank_batch(128, 4) == 32);
    CHECK_THROWS_WITH(dist::per_rank_batch(7, 2), Catch::Contains("global batch 7 does not split over 2 ranks"));
    CHECK_THROWS_AS(dist::shard_of(3, 2, 2), Error);
}

TEST_CASE("ranks with different settings are refused alike, with one message naming the difference", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    REQUIRE_NOTHROW(dist::require_same_settings(world, {{"width", "16"}, {"seed", "1"}}));
    const std::string width = world.rank() == 1 ? "32" : "16";
    CHECK_THROWS_WITH(dist::require_same_settings(world, {{"width", width}, {"seed", "1"}}),
                      "the ranks were started with different options: width is 16 on rank 0 but 32 on rank 1; "
                      "start every rank with the same options");
    CHECK_THROWS_AS(dist::require_same_settings(world, {{"width", width}}), dist::RefusedStart);
}

TEST_CASE("accuracy over the ranks' shards weighs every image once", "[dist]") {
    ProcessGroup& world = ProcessGroup::world();
    // Rank 0: 3 of 4 right; rank 1: 1 of 6 right. Together 4 of 10.
    train::Accuracy mine = world.rank() == 0 ? train::Accuracy{0.75, 1.0, 2.0, 4} : train::Accuracy{1.0 / 6, 0.5, 1.0, 6};
    train::Accuracy all = dist::reduce_accuracy(world, mine);
    CHECK(all.samples == 10);
    CHECK(all.top1 == 0.4);
    CHECK(all.top5 == 0.7);
    CHECK(all.loss == Approx(1.4));
}

int main(int argc, char** argv) {
    ProcessGroup& world = ProcessGroup::world();
    // Only rank 0 reports passes; a failure is reported by the rank that saw it.
    const int failed = Catch::Session().run(argc, argv);
    std::vector<double> failures{static_cast<double>(failed)};
    dist::sum_over_ranks(world, failures);
    return failures[0] == 0 ? 0 : 1;
}
