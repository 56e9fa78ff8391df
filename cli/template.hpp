// OpenShift Templates (template.openshift.io/v1 kind Template), processed as
// `oc process` does: parameter values (given, `value`, or generated from a
// `generate: expression` pattern), `${PARAM}` replaced in every string of the
// objects (map keys too), `${{PARAM}}` — a whole string — replaced by the
// value read as JSON (a number, boolean, …; a string when it is not JSON),
// `labels` added to every object (overriding the object's own label of the
// same key, and to a DeploymentConfig's pod template too), `message`
// substituted for printing after the objects are created.
//
// Errors name the template and the parameter: `Template "app": parameter
// GIT_URL is required and has no value; pass --param GIT_URL=VALUE`.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cascade::cli {

// The annotation load_objects puts on a Template read from a file: the file's
// directory, against which relative paths of the processed objects
// (BuildConfig spec.source.contextDir) are resolved.
extern const char* const kTemplateSourceDirAnnotation;

bool is_template(const nlohmann::json& obj);

// Records base_dir in a Template's annotations (kTemplateSourceDirAnnotation);
// other objects are left alone. load_objects calls it for every object.
void note_template_source(nlohmann::json& obj, const std::filesystem::path& base_dir);

// Checks a Template's shape: `objects` (an array of objects), `parameters`
// (each with a name of letters, digits and '_', no name twice; `generate`
// only "expression", with `from`), `labels` (strings). Throws cascade::Error.
void validate_template(const nlohmann::json& tmpl);

// Parameter values from the command line: "K=V" strings (--param, the last
// one of a name wins) over the KEY=VALUE lines of `param_file` (--param-file;
// blank lines and lines starting with '#' skipped; "-" is stdin).
std::map<std::string, std::string> parse_template_params(const std::vector<std::string>& params,
                                                         const std::string& param_file = {});

struct ProcessedTemplate {
    std::string name;                           // the template's metadata.name ("" when none)
    std::vector<nlohmann::json> objects;        // substituted and labelled
    std::string message;                        // substituted; "" when the template has none
    std::map<std::string, std::string> values;  // every parameter's final value
};

// Processes a Template with the given values. A value for a name the template
// does not declare is an error listing the template's parameters, unless
// `ignore_unknown` (several templates sharing one set of --param).
ProcessedTemplate process_template(const nlohmann::json& tmpl,
                                   const std::map<std::string, std::string>& values,
                                   bool ignore_unknown = false);

// A random string for an OpenShift `generate: expression` pattern: literal
// characters, and character classes (`[a-zA-Z0-9_]`, ranges and single
// characters; `\w` letters, digits and '_'; `\d` digits; `\a` letters and
// digits; `\A` symbols — inside a class or alone), each followed by a count
// `{n}` or `{n,m}` (at most 255; none: one character). Random bytes come from
// OpenSSL's CSPRNG. Throws cascade::Error on a malformed pattern.
std::string generate_from_expression(const std::string& expression);

// The objects with every Template among them replaced by its processed
// objects (relative paths resolved against the template's source directory,
// see kTemplateSourceDirAnnotation); each template's message, when it has
// one, is appended to `messages`. Values given for names no template
// declares, or given when there is no template, are errors.
std::vector<nlohmann::json> expand_templates(const std::vector<nlohmann::json>& objects,
                                             const std::map<std::string, std::string>& values,
                                             std::vector<std::string>* messages = nullptr);

// `oc process`'s output: {"kind": "List", "apiVersion": "v1", "items": [...]}.
nlohmann::json processed_list(const std::vector<nlohmann::json>& objects);

}  // namespace cascade::cli
