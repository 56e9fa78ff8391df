// The pod template and rollout strategy of a DeploymentConfig
// (apps.openshift.io/v1) or a Deployment (apps/v1) → runtime::DeploymentSpec:
// replicas, strategy, the one container's command/args/env/ports/probes/
// resources/volume mounts/security context, the pod's volumes, restart policy,
// hostname and grace period, labels.
//
// Errors name the object and the field and say what is supported:
//   DeploymentConfig "web": spec.template.spec.containers[0].resources.limits.memory "12x"
//   is not a quantity (e.g. 128Mi, 1G, 1.5Gi, 134217728)
// Fields cascade does not act on are reported as warnings and ignored.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/deployment.hpp"

namespace cascade::cli {

// Kubernetes quantities (a decimal number with an optional suffix: Ki Mi Gi
// Ti Pi Ei, n u m k M G T P E, or an exponent e3): the value in bytes, or in
// thousandths (millicores for cpu), rounded up. Throw cascade::Error without
// context (the caller adds the object and field).
int64_t quantity_bytes(const std::string& text);
int64_t quantity_millis(const std::string& text);

// Everything of `obj` but its name and image: replicas, strategy, template,
// labels. `obj` is a DeploymentConfig or a Deployment. Warnings (unsupported
// fields, ignored) are appended to `warnings` when given.
void read_deployment_fields(const nlohmann::json& obj, runtime::DeploymentSpec& spec,
                            std::vector<std::string>* warnings);

}  // namespace cascade::cli
