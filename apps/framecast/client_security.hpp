// How a client proves and checks identities: TLS (`--tls`, `--tls-ca`, `--tls-cert/--tls-key`,
// `--tls-server-name`, `--tls-insecure`) and a token (`--token FILE`, or FRAMECAST_TOKEN).
// One process runs one subcommand, so its options are one object that connect_to() reads.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "framecast/io/tls_client.hpp"

namespace framecast::app {

struct client_security {
    io::tls_client_options tls;
    std::string token_file;
};

// The options of the subcommand that runs.
client_security& security_options();

// Adds the TLS and token options to a client subcommand.
void add_security_options(CLI::App& cmd);

// The token to send: the file's content (white space around it ignored), or the
// FRAMECAST_TOKEN environment variable; "" when neither is given. Throws std::runtime_error
// when the file cannot be read.
std::string load_token();

}  // namespace framecast::app
