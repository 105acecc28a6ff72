#pragma once
/// @file dist.hpp
/// Data-parallel training over MPI (link bnn::mpi). Not part of bnn.hpp: the core has no MPI.
///
///     auto& group = bnn::dist::ProcessGroup::world();          // from mpirun's environment
///     bnn::dist::broadcast_module(group, model);               // one starting point
///     bnn::dist::GradientSync sync(group, model.parameters()); // averages gradients in backward
///     loader transform: bnn::dist::keep_shard(batch, group.rank(), group.size());
///     ... train_step as usual; reduce metrics with sum_over_ranks / reduce_accuracy
///     on_every_rank(group, "loading", [&] { ... });            // an error all ranks hit: printed once
///     catch (const std::exception& e) { return report_error(group, e); }
#include "bnn/dist/agreed_error.hpp"
#include "bnn/dist/agreement.hpp"
#include "bnn/dist/broadcast.hpp"
#include "bnn/dist/buffers.hpp"
#include "bnn/dist/gradient_sync.hpp"
#include "bnn/dist/metrics.hpp"
#include "bnn/dist/process_group.hpp"
#include "bnn/dist/sampler.hpp"
#include "bnn/dist/sync_batch_norm.hpp"
