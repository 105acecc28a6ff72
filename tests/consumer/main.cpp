// Uses the public umbrella header the way an application would, and checks one result.
#include <bnn/bnn.hpp>

#include <cstdio>

int main() {
    bnn::manual_seed(1);
    bnn::Variable x(bnn::Tensor<float>::full({1, 4, 4, 3}, 0.5f), true);
    bnn::nn::Conv2d conv(bnn::nn::Conv2dOptions{.in_channels = 3, .out_channels = 2, .kernel_size = 3, .padding = 1});
    bnn::Variable y = bnn::ops::mean(conv.forward(x));
    y.backward();
    bool ok = x.has_grad() && y.shape() == bnn::Shape{};
    std::printf("consumer: y = %f, gradient %s\n", y.item(), ok ? "present" : "missing");
    return ok ? 0 : 1;
}
