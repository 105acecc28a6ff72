// bnn's half of the deployment test of the PyTorch twin: runs a deployment file (written by the
// twin's bnn_twin.deploy.save_deployed) through bnn's fused inference, as examples/classify does,
// on a batch of images, and writes the logits, so the script can compare them with the twin's
// eval mode. With a fourth path, it also writes the network it loaded with bnn's own
// io::save_deployed, for the twin's load_deployed to read.
//
//   bnn_torch_deployed <model.deploy.safetensors> <in.safetensors> <out.safetensors> [<resaved.deploy.safetensors>]
//
// in:  "images" [N,H,W,C] F32 (bnn layout, normalized as the network expects).
// out: "logits" [N,K] from infer::compile(io::load_deployed(model)); "eval_logits" [N,K] from the
//   rebuilt module tree's eval-mode forward (the graph must equal it).
#include <cstdio>
#include <string>

#include "bnn/autograd/grad_mode.hpp"
#include "bnn/core/threads.hpp"
#include "bnn/infer/compile.hpp"
#include "bnn/io/deploy.hpp"
#include "bnn/io/safetensors.hpp"

namespace {

int run(const std::string& model_path, const std::string& in_path, const std::string& out_path,
        const std::string& resaved_path) {
    bnn::set_num_threads(1);
    const bnn::io::Deployed deployed = bnn::io::load_deployed(model_path);
    const bnn::io::SafetensorsFile in = bnn::io::load_safetensors(in_path);
    const bnn::Tensor<float> images = in.get<float>("images");
    BNN_CHECK(images.rank() == 4, "bnn_torch_deployed: images must be [N,H,W,C], got ", images.shape().str());
    bnn::infer::Graph graph = bnn::infer::compile(*deployed.model, images.shape());
    bnn::Tensor<float> logits = graph.run(images).clone();
    bnn::Tensor<float> eval_logits;
    {
        bnn::NoGradGuard no_tape;
        eval_logits = deployed.model->forward(bnn::Variable(images)).value().clone();
    }
    bnn::io::save_safetensors(out_path, {{"logits", logits}, {"eval_logits", eval_logits}});
    if (!resaved_path.empty()) bnn::io::save_deployed(resaved_path, *deployed.model, deployed.metadata);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4 && argc != 5) {
        std::fprintf(stderr, "usage: bnn_torch_deployed <model.deploy.safetensors> <in.safetensors> <out.safetensors> "
                             "[<resaved.deploy.safetensors>]\n");
        return 2;
    }
    try {
        return run(argv[1], argv[2], argv[3], argc == 5 ? argv[4] : "");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bnn_torch_deployed: %s\n", e.what());
        return 1;
    }
}
