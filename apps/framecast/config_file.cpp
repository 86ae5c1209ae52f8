#include "config_file.hpp"

#include <iterator>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "framecast/io/server.hpp"

namespace framecast::app {
namespace {

std::string join_names(const std::vector<const CLI::App*>& subs) {
    std::string out;
    for (const auto* s : subs) {
        if (s->get_name() != "help") out += (out.empty() ? "[" : ", [") + s->get_name() + "]";
    }
    return out;
}

// One TOML value as CLI11 inputs: scalars as text (integers as written without "_", floats
// in full), an array as one input per element.
bool to_inputs(const toml::node& v, std::vector<std::string>& out) {
    if (auto s = v.as_string()) {
        out.push_back(s->get());
    } else if (auto i = v.as_integer()) {
        out.push_back(std::to_string(i->get()));
    } else if (auto f = v.as_floating_point()) {
        out.push_back(fmt::format("{}", f->get()));
    } else if (auto b = v.as_boolean()) {
        out.push_back(b->get() ? "true" : "false");
    } else if (auto a = v.as_array()) {
        for (const auto& e : *a) {
            if (e.is_array() || e.is_table() || !to_inputs(e, out)) return false;
        }
    } else {
        return false;  // dates, times, inline tables: no option takes one
    }
    return true;
}

// [permissions."IDENTITY"] tables: each one's JSON, checked by the same rules as a token's
// claim. Throws CLI::ConfigError "FILE:LINE: what is wrong".
std::map<std::string, std::string> read_permissions(const toml::table& t, const std::string& file) {
    std::map<std::string, std::string> out;
    for (const auto& [key, value] : t) {
        const std::string who(key.str());
        const std::string where = fmt::format("{}:{}", file, key.source().begin.line);
        const std::string what = "permissions.\"" + who + "\"";
        if (!value.is_table()) {
            throw CLI::ConfigError(fmt::format(
                "{}: {} must be a table (publish.allow = [...], subscribe.deny = [...])", where, what));
        }
        std::ostringstream json;
        json << toml::json_formatter{*value.as_table()};
        if (auto e = io::permissions_error(json.str(), what); !e.empty()) {
            throw CLI::ConfigError(fmt::format("{}: {}", where, e));
        }
        out.emplace(who, json.str());
    }
    return out;
}

}  // namespace

std::string toml_config::to_config(const CLI::App* app, bool defaults, bool write_description,
                                   std::string prefix) const {
    return CLI::ConfigTOML().to_config(app, defaults, write_description, std::move(prefix));
}

std::string toml_config::file_name() const {
    const auto& r = config_option_.results();
    return r.empty() ? std::string("config file") : r.front();
}

std::vector<CLI::ConfigItem> toml_config::from_config(std::istream& in) const {
    const std::string doc{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    const std::string file = file_name();
    toml::table root;
    try {
        root = toml::parse(std::string_view(doc), std::string_view(file));
    } catch (const toml::parse_error& e) {
        throw CLI::ConfigError(fmt::format("{}:{}:{}: {}", file, e.source().begin.line,
                                           e.source().begin.column, e.description()));
    }
    auto at = [&](const toml::source_region& r) { return fmt::format("{}:{}", file, r.begin.line); };
    std::vector<CLI::ConfigItem> items;
    // One key of `table` (the root, or a subcommand's) becomes one item.
    auto add = [&](const CLI::App& owner, const std::string& section, const toml::key& key,
                   const toml::node& value) {
        const std::string name(key.str());
        const std::string where = at(key.source());
        const CLI::Option* opt = owner.get_option_no_throw("--" + name);
        if (opt == nullptr) opt = owner.get_option_no_throw(name);
        if (opt == nullptr || name == "config" || name == "help") {
            throw CLI::ConfigError(fmt::format(
                "{}: unknown key '{}'{}; keys are the long options of `framecast {}--help`",
                where, section.empty() ? name : section + "." + name,
                section.empty() ? "" : " in [" + section + "]",
                section.empty() ? "" : section + " "));
        }
        CLI::ConfigItem item;
        if (!section.empty()) item.parents.push_back(section);
        item.name = name;
        if (!to_inputs(value, item.inputs)) {
            throw CLI::ConfigError(fmt::format(
                "{}: '{}' must be a string, number, boolean or array of those", where, name));
        }
        lines_["--" + name] = where;
        items.push_back(std::move(item));
    };
    for (const auto& [key, value] : root) {
        if (!value.is_table()) {
            add(app_, "", key, value);
            continue;
        }
        const std::string section(key.str());
        if (section == "permissions") {  // not options: serve --auth cert reads it
            permissions_ = read_permissions(*value.as_table(), file);
            continue;
        }
        const CLI::App* sub = nullptr;
        for (const auto* s : app_.get_subcommands({})) {
            if (s->get_name() == section && section != "help") sub = s;
        }
        if (sub == nullptr) {
            throw CLI::ConfigError(fmt::format(
                "{}: unknown table [{}]; the tables are the subcommands: {}", at(key.source()),
                section, join_names(app_.get_subcommands({}))));
        }
        for (const auto& [k, v] : *value.as_table()) {
            if (v.is_table()) {
                throw CLI::ConfigError(fmt::format("{}: [{}.{}]: options are not nested",
                                                   at(k.source()), section, k.str()));
            }
            add(*sub, section, k, v);
        }
    }
    return items;
}

std::optional<std::map<std::string, std::string>> read_permissions_file(const std::string& file) {
    toml::table root;
    try {
        root = toml::parse_file(file);
    } catch (const toml::parse_error& e) {
        // A file that cannot be opened is a parse error without a line.
        if (e.source().begin.line == 0) throw CLI::ConfigError(fmt::format("{}: {}", file, e.description()));
        throw CLI::ConfigError(fmt::format("{}:{}:{}: {}", file, e.source().begin.line,
                                           e.source().begin.column, e.description()));
    }
    const auto* table = root.get("permissions");
    if (table == nullptr) return std::nullopt;
    if (!table->is_table()) {
        throw CLI::ConfigError(fmt::format("{}:{}: permissions must be a table",
                                           file, table->source().begin.line));
    }
    return read_permissions(*table->as_table(), file);
}

std::string toml_config::where(const std::string& error_text) const {
    // The longest flag named ("--max-message", not "--max").
    std::string best, line;
    for (const auto& [flag, where] : lines_) {
        if (flag.size() > best.size() && error_text.find(flag) != std::string::npos) {
            best = flag;
            line = where;
        }
    }
    return line;
}

}  // namespace framecast::app
