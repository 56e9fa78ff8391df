// Named volumes: directories under the state root that outlive containers
// (`<state>/volumes/<name>/_data`, Docker's layout).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace cascade::runtime {

// Throws cascade::Error unless `name` matches [a-z0-9][a-z0-9_.-]* (at most
// 128 characters).
void validate_volume_name(const std::string& name);

class VolumeStore {
  public:
    explicit VolumeStore(std::filesystem::path root);  // <state>/volumes

    // <root>/<name>/_data, created (0755) on first use.
    std::filesystem::path ensure(const std::string& name);
    // Removes the volume and its data; a missing volume is fine.
    void remove(const std::string& name);
    // Names of existing volumes, sorted.
    std::vector<std::string> list() const;
    const std::filesystem::path& root() const { return root_; }

  private:
    std::filesystem::path root_;
};

}  // namespace cascade::runtime
