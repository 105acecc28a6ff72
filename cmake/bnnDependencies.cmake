# The dependencies of bnn::bnn, shared by the build tree and the installed package.
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.3 CONFIG)
find_dependency(xtl CONFIG)     # Debian's xsimd target links the xtl target
find_dependency(xsimd CONFIG)
find_dependency(OpenMP)
find_dependency(nlohmann_json CONFIG)
find_dependency(ZLIB)

