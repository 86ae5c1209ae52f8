#include "client_security.hpp"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace framecast::app {

client_security& security_options() {
    static client_security options;
    return options;
}

void add_security_options(CLI::App& cmd) {
    auto& s = security_options();
    cmd.add_flag("--tls", s.tls.enabled,
                             "Connect with TLS, verifying the server's certificate chain and name "
                             "(exit 10 with the reason when it fails: expired, unknown CA, name "
                             "mismatch). A wss:// URL means TLS without it. The --tls-* options "
                             "need --tls or a wss:// URL");
    cmd.add_option("--tls-ca", s.tls.ca_file,
                   "--tls: trust the CAs in this PEM file instead of the system's")
        ->check(CLI::ExistingFile);
    auto* cert = cmd.add_option("--tls-cert", s.tls.cert_file,
                                "--tls: present this client certificate (PEM chain; the key too, "
                                "unless --tls-key) to a server that requires one (mutual TLS)")
                     ->check(CLI::ExistingFile);
    cmd.add_option("--tls-key", s.tls.key_file, "--tls-cert's private key (PEM)")
        ->check(CLI::ExistingFile)
        ->needs(cert);
    cmd.add_option("--tls-server-name", s.tls.server_name,
                   "--tls: the name to expect in the certificate (and send as SNI) instead of "
                   "the host connected to");
    cmd.add_flag("--tls-insecure", s.tls.insecure,
                 "--tls: do not verify the server's certificate at all (anyone on the path can "
                 "read and change the stream; for tests only)");
    cmd.add_option("--token", s.token_file,
                   "Authenticate to a server run with --auth jwt: send the JWT in this file as "
                   "the first frame and wait for its answer (exit 11 with the server's reason "
                   "when refused). Without it, the FRAMECAST_TOKEN environment variable is used "
                   "when set. Never on the command line itself: other users can read it there")
        ->check(CLI::ExistingFile);
}

std::string load_token() {
    std::string text;
    const auto& file = security_options().token_file;
    if (!file.empty()) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw std::runtime_error("cannot read the token file '" + file + "'");
        std::ostringstream s;
        s << in.rdbuf();
        text = s.str();
    } else if (const char* env = std::getenv("FRAMECAST_TOKEN")) {
        text = env;
    }
    const auto first = text.find_first_not_of(" \t\r\n");
    if (first == std::string::npos) return {};
    const auto last = text.find_last_not_of(" \t\r\n");
    return text.substr(first, last - first + 1);
}

}  // namespace framecast::app
