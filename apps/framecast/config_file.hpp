// The --config file: real TOML (toml++), mapped onto CLI11's options. One table per subcommand
// ([serve], [connect], ...), keys named like the long options; top-level keys are the global
// options (log-format). Errors name the file and line.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

namespace framecast::app {

class toml_config final : public CLI::Config {
public:
    // `app` is the root command (its subcommands are the tables); `config_option` is --config,
    // read for the file's name when an error is reported.
    toml_config(const CLI::App& app, const CLI::Option& config_option)
        : app_(app), config_option_(config_option) {}

    std::string to_config(const CLI::App*, bool, bool, std::string) const override;
    // Throws CLI::ConfigError "FILE:LINE: what is wrong".
    std::vector<CLI::ConfigItem> from_config(std::istream& in) const override;

    // "FILE:LINE" of the key that set the option named in `error_text` (e.g. "--interval"), or
    // "": to point a CLI11 validation error at the line it came from.
    std::string where(const std::string& error_text) const;

    // The [permissions] table (serve --auth cert): identity → its entry as JSON of a token's
    // "framecast" claim's shape; none without the table. Checked while reading (FILE:LINE).
    const std::optional<std::map<std::string, std::string>>& permissions() const { return permissions_; }

    // The --config file's name ("config file" when none was given).
    std::string file_name() const;
    bool given() const { return !config_option_.results().empty(); }

private:

    const CLI::App& app_;
    const CLI::Option& config_option_;
    // "--key" (with its table's subcommand) → "FILE:LINE"; mutable: filled while reading.
    mutable std::map<std::string, std::string> lines_;
    mutable std::optional<std::map<std::string, std::string>> permissions_;
};

// Reads `file`'s [permissions] table again (SIGHUP, serve --auth cert): none without one.
// Throws CLI::ConfigError "FILE:LINE: what is wrong" (or that the file cannot be read).
std::optional<std::map<std::string, std::string>> read_permissions_file(const std::string& file);

}  // namespace framecast::app
