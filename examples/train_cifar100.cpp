// The CIFAR-100 trainer: real ResNet-18, the strong binary baseline and Real-to-Bin with its
// progressive teacher-student steps, on CIFAR-100 (or CIFAR-10 / Fashion-MNIST).
//
//   train_cifar100                                  short Real-to-Bin + baseline run (defaults)
//   train_cifar100 --data DIR --schedule paper      the paper's CIFAR-100 schedule
//   train_cifar100 --resume                         continue an interrupted run in --out
#include <CLI/CLI.hpp>

#include <cstdio>
#include <thread>

#include "bnn/kernels/isa.hpp"
#include "cli_checks.hpp"
#include "trainer/command_line.hpp"
#include "trainer/trainer.hpp"

int main(int argc, char** argv) {
    trainer::TrainerOptions o;
    o.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    CLI::App app{"Train ResNet-18 on CIFAR-100 with the Real-to-Binary recipe (bnn)"};
    bnn::examples::one_line_errors(app, "train_cifar100");
    using bnn::examples::positive_integer, bnn::examples::non_negative_integer;
    app.add_option("--recipe", o.recipes, "recipes to run, in order: real, baseline, real-to-bin")
        ->delimiter(',')
        ->check(CLI::IsMember({"real", "baseline", "real-to-bin"}))
        ->capture_default_str();
    app.add_option("--data", o.data, "data directory (default: $BNN_DATA, data/cifar-100-binary, else Fashion-MNIST)");
    app.add_option("--format", o.format, "data format")
        ->check(CLI::IsMember({"auto", "cifar100", "cifar10", "fashion-mnist"}))
        ->capture_default_str();
    app.add_option("--width", o.width, "channels of ResNet-18's first stage (64 in the paper)")
        ->check(positive_integer())
        ->capture_default_str();
    app.add_option("--epochs", o.epochs, "epochs per stage (--schedule paper sets 350)")
        ->check(positive_integer())
        ->capture_default_str();
    app.add_option("--batch", o.batch, "global batch size (split over the processes under mpirun)")
        ->check(positive_integer())
        ->capture_default_str();
    app.add_option("--lr-scale", o.lr_scale, "factor on every stage's learning rate (1e-3 real weights, 2e-4 binary)")
        ->check(bnn::examples::positive_number())
        ->capture_default_str();
    std::string schedule = "short";
    app.add_option("--schedule", schedule,
                   "short: cosine over --epochs; cosine: the same; paper: 350 epochs, steps at 150/250/320, batch "
                   "128, rotation and mix-up")
        ->check(CLI::IsMember({"short", "cosine", "paper"}))
        ->capture_default_str();
    app.add_option("--mixup", o.mixup, "mix-up alpha (0: off)")
        ->check(bnn::examples::non_negative_number())
        ->capture_default_str();
    app.add_option("--rotation", o.rotation, "random rotation in degrees (0: off)")
        ->check(bnn::examples::non_negative_number())
        ->capture_default_str();
    app.add_option("--threads", o.threads, "threads (per process under mpirun)")
        ->check(positive_integer())
        ->capture_default_str();
    app.add_option("--seed", o.seed, "seed of initialisation, order and augmentation")
        ->check(non_negative_integer())
        ->capture_default_str();
    app.add_option("--out", o.out, "output directory: checkpoints, metrics.jsonl, curves.html")->capture_default_str();
    app.add_flag("--resume", o.resume, "continue the run in --out where it stopped");
    app.add_option("--stop-after-epochs", o.stop_after_epochs,
                   "stop as if interrupted after this many epochs in all (tests of --resume; 0: never)");
    app.add_option("--train-limit", o.train_limit, "train on a random subset of this many images (0: all)")
        ->check(non_negative_integer());
    app.add_option("--test-limit", o.test_limit, "test on a random subset of this many images (0: all)")
        ->check(non_negative_integer());
    if (const int code = trainer::parse_command_line(app, argc, argv); code >= 0) return code;

    if (schedule == "paper") {
        o.schedule = bnn::train::ScheduleShape::StepDecay;
        o.batch = 128;
        if (o.rotation == 0) o.rotation = 15;
        if (o.mixup == 0) o.mixup = 0.2f;
    } else {
        o.schedule = bnn::train::ScheduleShape::Cosine;
    }

    trainer::install_sigint_handler();
    try {
        const bool root = trainer::ranks().is_root();
        if (root) std::printf("bnn trainer: recipes");
        for (auto& r : o.recipes)
            if (root) std::printf(" %s", r.c_str());
        if (root) std::printf(", width %lld, %s schedule, batch %lld, %d threads, popcount kernels: %s\n",
                    static_cast<long long>(o.width), schedule.c_str(), static_cast<long long>(o.batch), o.threads,
                    bnn::kernels::isa_name(bnn::kernels::active_isa()));
        trainer::Trainer t(o);
        auto results = t.run();
        if (!root) return 0;
        std::printf("\n%-22s %8s %8s %10s %9s\n", "stage", "top-1", "top-5", "img/s", "time");
        for (const auto& r : results)
            std::printf("%-22s %7.2f%% %7.2f%% %10.0f %8.0fs\n", r.id.c_str(), 100 * r.top1, 100 * r.top5,
                        r.images_per_s, r.seconds);
        std::printf("\ncheckpoints, metrics.jsonl and curves.html are in %s\n", o.out.c_str());
    } catch (const trainer::Interrupted&) {
        if (trainer::ranks().is_root())
            std::fprintf(stderr, "\ninterrupted: every finished epoch is saved in %s; continue with --resume\n",
                     o.out.c_str());
        return 130;
    } catch (const std::exception& e) {  // bnn's, the file system's or the allocator's
        return trainer::report_failure(e);
    }
    return 0;
}
