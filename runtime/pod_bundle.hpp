// A deployment replica's runc bundle options: the image config plus the
// deployment's pod template (command, args, env, working dir, user, hostname,
// read-only root, resources, volumes) and the files the container gets as
// /etc/hosts and /etc/resolv.conf.
#pragma once

#include <filesystem>
#include <string>

#include "oci/image.hpp"
#include "runtime/bundle.hpp"
#include "runtime/deployment.hpp"
#include "runtime/volumes.hpp"

namespace cascade::runtime {

// The name of the per-container directory inside a ContainerHost bundle
// directory that ContainerHost::start tolerates (`host.bundle_dir(id) / kPodDirName`)
// and ContainerHost::remove deletes with the bundle.
inline constexpr const char* kPodDirName = "pod";

// Options for running `spec`'s container `container_id` on an image with
// config `image`:
// - argv: spec.command replaces Entrypoint (and then the image's Cmd is
//   dropped), spec.args replaces Cmd; throws cascade::Error naming the
//   deployment when nothing is left to run;
// - env: the image's, overridden key by key by spec.env; working_dir and user
//   when set; hostname: spec.hostname, else container_id; readonly_rootfs;
//   resources and cgroups_path ("/cascade/<container_id>"); network Own;
// - volumes: Named → volumes.ensure(name) bound in; Host → bound in (must
//   exist); Tmpfs → a tmpfs (size= when given); Empty → a fresh directory
//   under container_dir bound in;
// - hosts / resolv_conf: files written into `container_dir` (created when
//   missing; the caller removes it with the container, e.g.
//   host.bundle_dir(id) / kPodDirName, which ContainerHost removes itself).
BundleOptions pod_bundle_options(const oci::ContainerConfig& image, const DeploymentSpec& spec,
                                 const std::string& container_id,
                                 const std::filesystem::path& container_dir, VolumeStore& volumes);

}  // namespace cascade::runtime
