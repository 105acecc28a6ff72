#pragma once
// The trainer behind examples/train_cifar100.cpp: runs the stages of the chosen recipes, each
// teacher the result of an earlier stage, with per-epoch evaluation, metrics every few dozen
// steps and per epoch, learning curves and atomic checkpoints from which --resume continues
// exactly.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "bnn/core/threads.hpp"
#include "bnn/data/loader.hpp"
#include "bnn/data/transforms.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/optim/adam.hpp"
#include "bnn/train/distillation.hpp"
#include "bnn/train/evaluate.hpp"
#include "bnn/train/param_groups.hpp"
#include "bnn/train/stage_schedule.hpp"
#include "curves.hpp"
#include "data_source.hpp"
#include "distributed.hpp"
#include "memory_budget.hpp"
#include "metrics_log.hpp"
#include "output_dir.hpp"
#include "progress.hpp"
#include "recipes.hpp"
#include "resume_point.hpp"
#include "resnet18.hpp"
#include "resnet18_deploy.hpp"

namespace trainer {

struct TrainerOptions {
    std::vector<std::string> recipes{"real-to-bin", "baseline"};
    std::string data;            ///< "" = search (see find_data)
    std::string format = "auto";
    int64_t width = 16;
    int epochs = 1;              ///< per stage; the StepDecay schedule uses each stage's own (350)
    int64_t batch = 128;
    float lr_scale = 1.f;        ///< multiplies every stage's learning rate
    bnn::train::ScheduleShape schedule = bnn::train::ScheduleShape::Cosine;
    float mixup = 0.f;           ///< mix-up alpha; 0 disables it
    float rotation = 0.f;        ///< random rotation in degrees
    int threads = 2;
    uint64_t seed = 1;
    std::string out = "runs/latest";
    bool resume = false;
    int64_t train_limit = 0;     ///< use a random subset of this many training images (0: all)
    int64_t test_limit = 0;
    bool quiet = false;          ///< no progress bars (tests)
    int64_t step_record_every = 25;  ///< steps per step line of metrics.jsonl (fewer in short epochs)
    int stop_after_epochs = 0;   ///< stop as if interrupted after this many epochs in all (0: never)
};

struct StageResult {
    std::string id;
    double top1 = 0, top5 = 0, seconds = 0, images_per_s = 0;
    int epochs = 0;
};

/// Raised between batches after Ctrl-C; the last finished epoch is on disk.
struct Interrupted {};

namespace detail {
/// A stable string hash (std::hash may differ between standard libraries), for seeds.
inline uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

inline std::atomic<bool>& stop_flag() {
    static std::atomic<bool> flag{false};
    return flag;
}
extern "C" inline void on_sigint(int) {
    stop_flag() = true;
    std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the program at once
}
}  // namespace detail

/// Asks the running trainer to stop after the current batch when Ctrl-C is pressed.
inline void install_sigint_handler() { std::signal(SIGINT, detail::on_sigint); }

class Trainer {
public:
    explicit Trainer(TrainerOptions o) : opt_(std::move(o)) {
        BNN_CHECK(opt_.width > 0 && opt_.epochs > 0 && opt_.batch > 0, "trainer: width, epochs and batch must be ",
                  "positive, got ", opt_.width, ", ", opt_.epochs, ", ", opt_.batch);
    }

    /// Trains every stage of the plan (skipping stages already complete when resuming) and
    /// returns their test accuracies.
    std::vector<StageResult> run() {
        bnn::set_num_threads(opt_.threads);
        const std::vector<StagePlan> plan = plan_recipes(opt_.recipes);
        require_ranks_agree(settings(), opt_.batch);
        DataSplits data;
        std::unique_ptr<bnn::data::BatchLoader> train_loader, test_loader;
        // Under mpirun an error here (bad data, a bad --out) is usually every rank's: printed once.
        bnn::dist::on_every_rank(ranks(), "the trainer's start-up", [&] {
            if (ranks().is_root()) prepare_output_dir(opt_.out);  // its clean-up would race with rank 0's writes
            DataSource src = find_data(opt_.data, opt_.format);
            log("data: %s from %s (%s)\n", src.format.c_str(), src.dir.c_str(), src.reason.c_str());
            if (src.format != "cifar100")
                log("      for CIFAR-100 pass --data DIR (the binary version: train.bin, test.bin) or set BNN_DATA\n");
            data = load_data(src);
            data.train = subset(std::move(data.train), opt_.train_limit, opt_.seed);
            data.test = subset(std::move(data.test), opt_.test_limit, opt_.seed + 1);
            norm_ = bnn::data::channel_statistics(data.train.images);
            dataset_name_ = src.format;
            class_names_ = data.train.class_names;
            num_classes_ = data.train.num_classes;
            in_channels_ = data.train.channels();
            image_size_ = src.format == "fashion-mnist" ? 28 : 32;  // before padding to 32
            log("      %lld training and %lld test images of %lldx%lldx%lld, %d classes\n",
                static_cast<long long>(data.train.size()), static_cast<long long>(data.test.size()),
                static_cast<long long>(data.train.height()), static_cast<long long>(data.train.width()),
                static_cast<long long>(in_channels_), num_classes_);
            require_memory_for(plan, data.test.size());  // before an earlier run's metrics log is emptied

            metrics_ = std::make_unique<MetricsLog>(ranks().is_root() ? metrics_path() : std::string(), opt_.resume);

            train_loader = std::make_unique<bnn::data::BatchLoader>(
                data.train, bnn::data::LoaderOptions{.batch_size = opt_.batch,
                                                     .shuffle = true,
                                                     .drop_last = true,
                                                     .seed = opt_.seed,
                                                     .random_crop = true,
                                                     .horizontal_flip = true,
                                                     .rotation_degrees = opt_.rotation,
                                                     .mixup_alpha = opt_.mixup,
                                                     .mean = norm_.mean,
                                                     .std = norm_.std,
                                                     .transform = keep_my_shard()});
            BNN_CHECK(train_loader->batches_per_epoch() > 0, "trainer: --batch ", opt_.batch, " is larger than the ",
                      data.train.size(), " training images: an epoch would have no step");
            test_loader = std::make_unique<bnn::data::BatchLoader>(
                data.test, bnn::data::LoaderOptions{.batch_size = kTestBatch, .shuffle = false, .mean = norm_.mean,
                                                    .std = norm_.std, .transform = keep_my_shard()});
        });
        std::vector<StageResult> results;
        for (const StagePlan& stage : plan) results.push_back(run_stage(stage, *train_loader, *test_loader));
        return results;
    }

    /// The network of a stage, freshly initialised (seeded by the stage, so a resumed run builds
    /// the same one).
    std::unique_ptr<bnn::examples::ResNet18> make_model(const StagePlan& s) const {
        bnn::manual_seed(opt_.seed * 1000003 + detail::fnv1a(s.id));
        return std::make_unique<bnn::examples::ResNet18>(bnn::examples::ResNetOptions{
            .variant = s.variant,
            .stem = bnn::examples::Stem::Cifar,
            .width = opt_.width,
            .num_classes = num_classes_,
            .in_channels = in_channels_,
            .mode = s.mode()});
    }

    std::string checkpoint_path(const StagePlan& s) const { return (std::filesystem::path(opt_.out) / s.file_name()).string(); }

private:
    /// What the epochs of one stage share (references to run_stage's locals).
    struct Stage {
        const StagePlan& plan;
        const std::string& path;  ///< its checkpoint
        int epochs;
        float lr;                 ///< the stage's, before the schedule's factor
        const bnn::optim::LrSchedule& schedule;
        bnn::examples::ResNet18& model;
        bnn::examples::ResNet18* teacher;
        bnn::optim::Adam& optimizer;
    };
    /// Where a stage starts: the epoch after its checkpoint's, its teacher, or its result when
    /// it is already complete.
    struct StageStart {
        int first_epoch = 1;
        std::optional<StageResult> skipped;
        std::unique_ptr<bnn::examples::ResNet18> teacher;
    };
    /// Sums over an epoch's steps.
    struct EpochSums {
        double attention = 0, kd = 0;
        int64_t steps = 0;
    };

    StageResult run_stage(const StagePlan& s, bnn::data::BatchLoader& train_loader,
                          bnn::data::BatchLoader& test_loader) {
        const std::string path = checkpoint_path(s);
        auto model = make_model(s);
        const auto& c = s.config;
        const int epochs = epochs_of(s);
        auto schedule = bnn::train::stage_schedule(c, opt_.schedule, epochs);
        const float lr = c.lr * opt_.lr_scale;
        bnn::optim::Adam optimizer(bnn::train::param_groups(*model, lr, c.weight_decay),
                                   {.decoupled_weight_decay = true});
        StageStart start = open_stage(s, path, *model, optimizer, epochs);
        if (start.skipped) return *start.skipped;
        start_from_rank0(*model, optimizer);
        const auto sync = sync_gradients(*model);  // averages the gradients in every backward
        log("== %s: %s student, %s, %lld parameters, %d epochs, lr %g, weight decay %g\n", s.id.c_str(),
            bnn::examples::variant_name(s.variant), bnn::train::student_name(c.student_mode).c_str(),
            static_cast<long long>(model->num_parameters()), epochs, lr, c.weight_decay);

        metrics_->rewind(s.id, start.first_epoch);  // what an interrupted run logged past the checkpoint

        const Stage stage{s, path, epochs, lr, *schedule, *model, start.teacher.get(), optimizer};
        StageResult result{s.id, 0, 0, 0, 0, epochs};
        for (int epoch = start.first_epoch; epoch <= epochs; ++epoch) {
            // Epoch e's batches depend only on (seed, stage, e): a resumed run sees the same ones.
            train_loader.start_epoch(static_cast<int64_t>(detail::fnv1a(s.id) % 100000) * 1000 + epoch);
            char label[96];
            std::snprintf(label, sizeof label, "%-18s %d/%d", s.id.c_str(), epoch, epochs);
            ProgressBar bar(label, train_loader.batches_per_epoch() * opt_.batch,
                            {.visible = !opt_.quiet && ranks().is_root()});
            const EpochSums sums = train_epoch(stage, epoch, train_loader, bar);
            end_epoch(stage, epoch, bar, sums, test_loader, result);
        }
        return result;
    }

    /// Loads what the stage starts from: its checkpoint when resuming (or notes it complete),
    /// else the stage it is initialised from; and its frozen teacher.
    StageStart open_stage(const StagePlan& s, const std::string& path, bnn::examples::ResNet18& model,
                          bnn::optim::Adam& optimizer, int epochs) {
        StageStart start;
        // Every rank reads the same files: an error in one is every rank's, printed once.
        bnn::dist::on_every_rank(ranks(), "reading the stage's files", [&] {
            if (opt_.resume && std::filesystem::exists(path)) {
                const ResumePoint point = read_resume_point(path, model, optimizer, epochs);
                if (point.complete) {
                    log("== %s: complete in %s, skipped\n", s.id.c_str(), path.c_str());
                    start.skipped = result_from(s, point);
                    return;
                }
                start.first_epoch = point.epoch + 1;
                log("== %s: resuming after epoch %d from %s\n", s.id.c_str(), start.first_epoch - 1, path.c_str());
            } else if (!s.init_from.empty()) {
                auto report = bnn::io::load_module(checkpoint_path(find(s.init_from)), model, {.strict = false});
                log("== %s: initialised from %s (%s)\n", s.id.c_str(), s.init_from.c_str(), report.str().c_str());
            }
            if (!s.teacher.empty()) {
                const StagePlan& t = find(s.teacher);
                start.teacher = make_model(t);
                bnn::io::load_module(checkpoint_path(t), *start.teacher);
                bnn::train::freeze(*start.teacher);
            }
        });
        return start;
    }

    /// The training steps of one epoch (started on train_loader), with a step line of
    /// metrics.jsonl every few dozen steps.
    EpochSums train_epoch(const Stage& st, int epoch, bnn::data::BatchLoader& train_loader, ProgressBar& bar) {
        const StagePlan& s = st.plan;
        const int64_t steps_per_epoch = train_loader.batches_per_epoch();
        // A step line every few dozen steps, at least a few per epoch in short epochs, and windows
        // of equal size (to a step), so the last one of an epoch does not average a handful of steps.
        const int64_t record_every =
            std::clamp<int64_t>(steps_per_epoch / 8, 1, std::max<int64_t>(opt_.step_record_every, 1));
        const int64_t records_per_epoch = (steps_per_epoch + record_every - 1) / record_every;
        EpochSums sums;
        int64_t& step = sums.steps;
        Window window;
        auto record_window = [&] {
            write_record(st, epoch, StepRecord{s.id, epoch, step, steps_per_epoch, window.loss_sum / window.images,
                                               static_cast<double>(window.correct) / window.images,
                                               st.lr * st.optimizer.lr_factor()});
            window = {};
        };
        while (auto batch = train_loader.next()) {
            if (detail::stop_flag()) throw Interrupted{};
            const double e = epoch - 1 + static_cast<double>(step) / steps_per_epoch;
            st.optimizer.set_lr_factor(st.schedule.factor(e));
            bnn::train::StepResult r = bnn::train::distillation_step(
                st.teacher, st.model, {batch->images, batch->labels, batch->targets}, s.config.weights, st.optimizer);
            // Over every rank; a Ctrl-C on any rank stops all after this step.
            const StepTotals t = step_totals(static_cast<int64_t>(batch->labels.size()), r.parts,
                                             bnn::train::count_hits(r.logits, batch->labels).top1, detail::stop_flag());
            if (t.stop) detail::stop_flag() = true;
            // The step has already applied non-finite gradients: stop before anything is saved.
            // (The loss summed over the ranks, so that every rank stops, with one message.)
            if (!std::isfinite(t.loss_sum))
                fail_alike("trainer: ", s.id, " epoch ", epoch, " step ", step + 1, ": the loss is ", t.loss_sum,
                           "; stage stopped, ", kept(st, epoch), " (too high a learning rate? see --lr-scale)");
            sums.attention += t.attention;
            sums.kd += t.kd;
            ++step;
            bar.update(t.images, t.loss_sum, t.top1);
            window.add(t.images, t.loss_sum, t.top1);
            if (step * records_per_epoch / steps_per_epoch != (step - 1) * records_per_epoch / steps_per_epoch)
                record_window();
        }
        if (window.images > 0) record_window();
        bar.finish();
        return sums;
    }

    /// After an epoch's steps: the test accuracy, its line of metrics.jsonl, the deployment file
    /// after the last epoch of a fully binary stage, and the checkpoint.
    void end_epoch(const Stage& st, int epoch, const ProgressBar& bar, const EpochSums& sums,
                   bnn::data::BatchLoader& test_loader, StageResult& result) {
        const StagePlan& s = st.plan;
        bnn::train::Accuracy acc = evaluate_on_ranks(st.model, test_loader);
        EpochRecord r{s.id,
                      epoch,
                      bar.mean_loss(),
                      bar.accuracy(),
                      acc.top1,
                      acc.top5,
                      st.lr * st.schedule.factor(epoch - 1e-9),
                      sums.attention / std::max<int64_t>(sums.steps, 1),
                      sums.kd / std::max<int64_t>(sums.steps, 1),
                      bar.images_per_second(),
                      bar.seconds()};
        log("   %s epoch %d: train loss %.4f acc %.2f%%  test top-1 %.2f%% top-5 %.2f%%  (%.0f img/s, %.0f s)\n",
            s.id.c_str(), epoch, r.train_loss, 100 * r.train_acc, 100 * acc.top1, 100 * acc.top5, r.images_per_s,
            r.seconds);
        write_record(st, epoch, r);
        // The deployment file goes first: a crash between the two leaves the stage incomplete,
        // so --resume redoes its last epoch and writes both again.
        if (epoch == st.epochs && s.config.student_mode == bnn::nn::BinaryMode::FullyBinary && ranks().is_root())
            export_deployment(s, st.model, st.epochs);
        nlohmann::json meta = stage_metadata(s, epoch, st.epochs, acc);
        if (ranks().is_root()) {
            try {
                bnn::io::save_checkpoint(st.path, st.model, st.optimizer, meta);
            } catch (const bnn::Error& e) {
                bnn::fail("trainer: ", s.id, " epoch ", epoch, ": the checkpoint could not be saved, ", kept(st, epoch),
                          ": ", e.what());
            }
        }
        wait_for_rank0_files();
        if (opt_.stop_after_epochs > 0 && ++epochs_run_ >= opt_.stop_after_epochs) throw Interrupted{};
        result.top1 = acc.top1;
        result.top5 = acc.top5;
        result.seconds += r.seconds;
        result.images_per_s = r.images_per_s;
    }

    /// What a stage stopped in `epoch` leaves on disk (the write of a checkpoint is atomic).
    static std::string kept(const Stage& st, int epoch) {
        return epoch > 1 ? "its checkpoint of epoch " + std::to_string(epoch - 1) + " is kept in '" + st.path + "'"
                         : std::string("nothing of it was saved");
    }

    /// Adds a record to metrics.jsonl and redraws curves.html. A record or a page that cannot be
    /// written (a full disk) ends the run, as a checkpoint that cannot be saved does: what is on
    /// disk is what the run did.
    template <class Record>
    void write_record(const Stage& st, int epoch, const Record& record) {
        const char* file = "metrics.jsonl";
        try {
            metrics_->add(record);
            file = "curves.html";
            write_curves();
        } catch (const bnn::Error& e) {
            bnn::fail("trainer: ", st.plan.id, " epoch ", epoch, ": ", file, " could not be written, ", kept(st, epoch),
                      ": ", e.what());
        }
    }

    /// Refuses a run that would not fit in memory (memory_budget.hpp), from the parameters of
    /// the plan's largest network at width 8: building it at --width is what would not fit.
    void require_memory_for(const std::vector<StagePlan>& plan, int64_t test_images) const {
        int64_t at_8 = 0;
        for (const StagePlan& s : plan)
            at_8 = std::max(at_8, bnn::examples::ResNet18({.variant = s.variant,
                                                           .stem = bnn::examples::Stem::Cifar,
                                                           .width = 8,
                                                           .num_classes = num_classes_,
                                                           .in_channels = in_channels_,
                                                           .mode = s.mode()})
                                      .num_parameters());
        const int n = ranks().size();  // each rank trains on --batch / n images, tests on kTestBatch / n
        const int64_t test_batch = (std::min(kTestBatch, test_images) + n - 1) / n;
        const MemoryEstimate e =
            estimate_training_memory(parameter_bound(opt_.width, at_8), opt_.width, opt_.batch / n, test_batch, 32);
        require_memory(e, ranks().local_size(), memory_available(), opt_.width, opt_.batch);
    }

    /// The deployable form of a fully binary stage: 1-bit packed weights, with what a classifier
    /// needs to use it.
    void export_deployment(const StagePlan& s, const bnn::examples::ResNet18& model, int epochs) const {
        bnn::io::Metadata extra;
        for (const char* key : {"dataset", "mean", "std", "class_names", "image_size", "input_size"})
            extra[key] = stage_metadata(s, epochs, epochs, {}).at(key).dump();
        const std::string deploy = (std::filesystem::path(opt_.out) / s.deploy_file_name()).string();
        bnn::examples::export_resnet18(deploy, model, extra);
        log("   %s: deployment file %s\n", s.id.c_str(), deploy.c_str());
    }

    /// The options every rank must share (threads, paths and --resume may differ).
    bnn::dist::Settings settings() const {
        std::string recipes;
        for (const auto& r : opt_.recipes) recipes += (recipes.empty() ? "" : ",") + r;
        return {{"recipe", recipes},
                {"format", opt_.format},
                {"width", std::to_string(opt_.width)},
                {"epochs", std::to_string(opt_.epochs)},
                {"batch", std::to_string(opt_.batch)},
                {"lr-scale", std::to_string(opt_.lr_scale)},
                {"schedule", opt_.schedule == bnn::train::ScheduleShape::StepDecay ? "paper" : "cosine"},
                {"mixup", std::to_string(opt_.mixup)},
                {"rotation", std::to_string(opt_.rotation)},
                {"seed", std::to_string(opt_.seed)},
                {"train-limit", std::to_string(opt_.train_limit)},
                {"test-limit", std::to_string(opt_.test_limit)}};
    }

    nlohmann::json stage_metadata(const StagePlan& s, int epoch, int epochs, const bnn::train::Accuracy& acc) const {
        return {{"stage", s.id},
                {"variant", bnn::examples::variant_name(s.variant)},
                {"student", bnn::train::student_name(s.config.student_mode)},
                {"epoch", epoch},
                {"epochs", epochs},
                {"complete", epoch == epochs},
                {"test_top1", acc.top1},
                {"test_top5", acc.top5},
                {"seed", opt_.seed},
                {"width", opt_.width},
                {"num_classes", num_classes_},
                {"in_channels", in_channels_},
                {"image_size", image_size_},
                {"input_size", 32},
                {"dataset", dataset_name_},
                {"mean", norm_.mean},
                {"std", norm_.std},
                {"class_names", class_names_}};
    }

    StageResult result_from(const StagePlan& s, const ResumePoint& point) const {
        StageResult r{s.id, point.test_top1, point.test_top5, 0, 0, point.epoch};
        for (const auto& rec : metrics_->epochs())
            if (rec.stage == s.id) r.seconds += rec.seconds, r.images_per_s = rec.images_per_s;
        return r;
    }

    const StagePlan& find(const std::string& id) const {
        for (const auto& s : plan_cache())
            if (s.id == id) return s;
        bnn::fail("trainer: no stage '", id, "' in the plan");
    }
    const std::vector<StagePlan>& plan_cache() const {
        if (plan_.empty()) plan_ = plan_recipes(opt_.recipes);
        return plan_;
    }

    std::string metrics_path() const { return (std::filesystem::path(opt_.out) / "metrics.jsonl").string(); }

    /// Epochs a stage runs: its own with the paper's step schedule, --epochs with the cosine.
    int epochs_of(const StagePlan& s) const {
        return opt_.schedule == bnn::train::ScheduleShape::StepDecay ? s.config.epochs : opt_.epochs;
    }

    /// Rewrites curves.html from the metrics so far (atomically; bnn::Error if it cannot).
    void write_curves() const {
        if (!ranks().is_root()) return;
        std::vector<StageSpan> stages;
        for (const auto& s : plan_cache()) stages.push_back({s.id, epochs_of(s), s.paper_top1});
        write_curves_html((std::filesystem::path(opt_.out) / "curves.html").string(), stages, metrics_->steps(),
                          metrics_->epochs(), "bnn trainer: " + dataset_name_);
    }

    /// Training loss and hits since the last step line.
    struct Window {
        int64_t images = 0, correct = 0;
        double loss_sum = 0;
        void add(int64_t n, double loss, int64_t hits) {
            images += n;
            loss_sum += loss;
            correct += hits;
        }
    };

    template <class... A>
    void log(const char* fmt, A... a) const {
        static_assert(((std::is_arithmetic_v<A> || std::is_pointer_v<A>) && ...),
                      "log passes its arguments to printf: numbers and C strings only");
        if (opt_.quiet || !ranks().is_root()) return;
        std::printf(fmt, a...);
        std::fflush(stdout);
    }

    static constexpr int64_t kTestBatch = 250;  ///< images per evaluation batch (over all ranks)

    TrainerOptions opt_;
    bnn::data::Normalization norm_;
    std::string dataset_name_;
    std::vector<std::string> class_names_;
    int num_classes_ = 0;
    int64_t in_channels_ = 0;
    int64_t image_size_ = 32;
    std::unique_ptr<MetricsLog> metrics_;
    int epochs_run_ = 0;
    mutable std::vector<StagePlan> plan_;
};

}  // namespace trainer
