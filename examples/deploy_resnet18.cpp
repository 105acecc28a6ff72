// Exports a fully binary ResNet-18 (Real-to-Bin or strong baseline) for deployment and reports
// the deployment file's size against the float checkpoint of the same model, then checks that
// the deployed model predicts exactly as the training model in eval mode.
//
//   deploy_resnet18 [--variant real-to-bin|strong-baseline] [--stem cifar|imagenet] [--width 64]
//                   [--classes 100] [--checkpoint trained.safetensors] [--out dir]
#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

#include "bnn/infer/compile.hpp"
#include "bnn/io/checkpoint.hpp"
#include "bnn/io/deploy.hpp"
#include "cli_checks.hpp"
#include "resnet18_deploy.hpp"

int main(int argc, char** argv) {
    using namespace bnn;
    CLI::App app{"Export a binary ResNet-18 with 1-bit packed weights and compare sizes"};
    examples::one_line_errors(app, "deploy_resnet18");
    std::string variant = "real-to-bin", stem = "cifar", checkpoint, out_dir = std::filesystem::temp_directory_path();
    int64_t width = 64, classes = 100;
    app.add_option("--variant", variant)->check(CLI::IsMember({"real-to-bin", "strong-baseline"}));
    app.add_option("--stem", stem)->check(CLI::IsMember({"cifar", "imagenet"}));
    app.add_option("--width", width)->check(examples::positive_integer());
    app.add_option("--classes", classes)->check(examples::positive_integer());
    app.add_option("--checkpoint", checkpoint, "trained weights (stage 3); random weights when absent");
    app.add_option("--out", out_dir, "directory for the two files");
    CLI11_PARSE(app, argc, argv);

    try {
        BNN_CHECK(std::filesystem::is_directory(out_dir), "--out '", out_dir, "' is not a directory");
        examples::ResNetOptions o;
        o.variant = variant == "real-to-bin" ? examples::Variant::RealToBin : examples::Variant::StrongBaseline;
        o.stem = stem == "cifar" ? examples::Stem::Cifar : examples::Stem::ImageNet;
        o.width = width;
        o.num_classes = classes;
        o.mode = nn::BinaryMode::FullyBinary;
        examples::ResNet18 net(o);
        if (!checkpoint.empty()) io::load_module(checkpoint, net);
        net.eval();

        const std::string float_path = (std::filesystem::path(out_dir) / "resnet18_float.safetensors").string();
        const std::string deploy_path = (std::filesystem::path(out_dir) / "resnet18_deploy.safetensors").string();
        io::save_checkpoint(float_path, net);
        examples::export_resnet18(deploy_path, net);
        const auto float_bytes = std::filesystem::file_size(float_path);
        const auto deploy_bytes = std::filesystem::file_size(deploy_path);
        std::printf("%s ResNet-18 (%s stem, width %lld, %lld classes)\n", examples::variant_name(o.variant),
                    stem.c_str(), static_cast<long long>(width), static_cast<long long>(classes));
        std::printf("  float checkpoint : %12llu bytes  %s\n", static_cast<unsigned long long>(float_bytes),
                    float_path.c_str());
        std::printf("  deployment file  : %12llu bytes  %s\n", static_cast<unsigned long long>(deploy_bytes),
                    deploy_path.c_str());
        std::printf("  ratio            : %12.2fx smaller\n", double(float_bytes) / double(deploy_bytes));

        io::Deployed deployed = io::load_deployed(deploy_path);  // rebuilt from the file alone
        Rng rng(7);
        const int64_t size = o.stem == examples::Stem::Cifar ? 32 : 224;
        Tensor<float> x = Tensor<float>::randn({2, size, size, 3}, rng);
        Tensor<float> expected;
        {
            NoGradGuard no_tape;
            expected = net.forward(Variable(x)).value();
        }
        Tensor<float> got = infer::compile(*deployed.model, x.shape()).run(x);
        int64_t differ = 0;
        for (int64_t i = 0; i < got.numel(); ++i) differ += got[i] != expected[i];
        std::printf("  deployed logits equal to the training model's: %s (%lld of %lld differ)\n",
                    differ == 0 ? "yes" : "NO", static_cast<long long>(differ), static_cast<long long>(got.numel()));
        return differ == 0 ? 0 : 1;
    } catch (const Error& e) {
        std::fprintf(stderr, "deploy_resnet18: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {  // the file system's or the allocator's
        std::fprintf(stderr, "deploy_resnet18: %s\n", e.what());
        return 1;
    }
}
