// cascade-log-shim: the per-container log process (runtime/logs.hpp). Its
// spec comes in the environment (kLogShimEnv), the container's output on
// stdin.
#include <cstdlib>

#include "runtime/log_shim.hpp"

int main() {
    const char* spec = std::getenv(cascade::runtime::kLogShimEnv);
    return spec == nullptr ? 2 : cascade::runtime::run_log_shim(spec);
}
