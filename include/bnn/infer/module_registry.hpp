#pragma once
/// @file module_registry.hpp
/// The module types bnn knows (module_type.hpp): its own, listed below, and those a user adds
/// with register_module. io's module tree (describe_module, build_module) and infer::compile
/// look every module up here, so a registered type is saved in deployment files, loaded and
/// compiled like bnn's own.
///
/// A module is looked up by its exact class, then as the first registered type it derives from;
/// a module of no registered type whose is_chain() is true is taken as its children in order.
#include <memory>
#include <mutex>
#include <string>
#include <typeindex>
#include <vector>

#include "bnn/core/error.hpp"
#include "bnn/infer/lowering.hpp"
#include "bnn/infer/module_type.hpp"
#include "bnn/infer/modules/activation.hpp"
#include "bnn/infer/modules/basic_block.hpp"
#include "bnn/infer/modules/batch_norm.hpp"
#include "bnn/infer/modules/binary_conv2d.hpp"
#include "bnn/infer/modules/binary_half_block.hpp"
#include "bnn/infer/modules/channel_shift.hpp"
#include "bnn/infer/modules/conv2d.hpp"
#include "bnn/infer/modules/linear.hpp"
#include "bnn/infer/modules/pool.hpp"
#include "bnn/infer/modules/sequential.hpp"

namespace bnn::infer {

namespace detail {

/// bnn's own module types. A subclass matches the first type it derives from, so a class comes
/// before its base (Downsample before Sequential).
inline std::vector<ModuleType> builtin_module_types() {
    namespace m = modules;
    return {m::conv2d(),      m::binary_conv2d(),   m::batch_norm2d(),      m::linear(),       m::prelu(),
            m::relu(),        m::tanh(),            m::sigmoid(),           m::sign(),         m::hardtanh(),     m::max_pool2d(),
            m::avg_pool2d(),  m::global_avg_pool(), m::flatten(),           m::channel_gate(), m::channel_shift(),
            m::downsample(),  m::basic_block(),     m::binary_half_block(), m::binary_basic_block(),
            m::residual(),    m::sequential()};
}

class ModuleRegistry {
public:
    static ModuleRegistry& instance() {
        static ModuleRegistry registry;
        return registry;
    }
    void add(ModuleType t) {
        std::lock_guard lock(mutex_);
        BNN_CHECK(!t.name.empty() && t.is && t.describe && t.build && t.lower,
                  "register_module: expected a name and the four functions of module_type<M>(), got type '", t.name, "'");
        for (const auto& e : types_) {
            BNN_CHECK(e->name != t.name, "register_module: a module type named '", t.name, "' is already registered");
            BNN_CHECK(e->type != t.type, "register_module: the class of '", t.name, "' is already registered as '",
                      e->name, "'");
        }
        types_.push_back(std::make_shared<const ModuleType>(std::move(t)));
    }
    std::shared_ptr<const ModuleType> find(const nn::Module& m) const {
        std::lock_guard lock(mutex_);
        for (const auto& e : types_)
            if (e->type == std::type_index(typeid(m))) return e;
        for (const auto& e : types_)
            if (e->is(m)) return e;
        return nullptr;
    }
    std::shared_ptr<const ModuleType> find(const std::string& name) const {
        std::lock_guard lock(mutex_);
        for (const auto& e : types_)
            if (e->name == name) return e;
        return nullptr;
    }
    /// "Conv2d, BinaryConv2d, ..." in registration order.
    std::string names() const {
        std::lock_guard lock(mutex_);
        std::string out;
        for (const auto& e : types_) out += (out.empty() ? "" : ", ") + e->name;
        return out;
    }

private:
    ModuleRegistry() {
        for (auto& t : builtin_module_types()) types_.push_back(std::make_shared<const ModuleType>(std::move(t)));
    }
    mutable std::mutex mutex_;
    std::vector<std::shared_ptr<const ModuleType>> types_;
};

}  // namespace detail

/// Adds a module type (made with module_type<M>) for describe_module, build_module,
/// load_deployed and infer::compile. bnn::Error when its name or class is registered already.
inline void register_module(ModuleType type) { detail::ModuleRegistry::instance().add(std::move(type)); }

/// The registered type of `m` (see the file comment), or null.
inline std::shared_ptr<const ModuleType> find_module_type(const nn::Module& m) {
    return detail::ModuleRegistry::instance().find(m);
}
/// The type registered under `name`, or null.
inline std::shared_ptr<const ModuleType> find_module_type(const std::string& name) {
    return detail::ModuleRegistry::instance().find(name);
}
/// The names of every registered type, for messages.
inline std::string registered_module_names() { return detail::ModuleRegistry::instance().names(); }

inline int Lowering::lower(const nn::Module& m, const std::string& path, int x) {
    if (const auto type = find_module_type(m)) return type->lower(*this, m, path, x);
    if (m.is_chain()) return chain(m, path, x);
    ::bnn::fail("infer::compile: '", shown_path(path), "' is a ", m.type_name(),
                ", whose forward the compiler cannot see; build it from bnn's modules (Sequential, Residual, the "
                "binary blocks, ...), register its type (infer::register_module), or, if its forward applies its "
                "children in order, override is_chain() to return true");
}

}  // namespace bnn::infer
