#include "oci/error.hpp"

#include <cstring>

namespace cascade {

Error sys_error(const std::string& operation, const std::string& path, int err) {
    std::string message = operation;
    if (!path.empty()) message += " " + path;
    message += ": ";
    message += std::strerror(err);
    return Error(message);
}

}  // namespace cascade
