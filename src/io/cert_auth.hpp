// Identities from TLS client certificates (`serve --auth cert`, which needs mutual TLS): no
// token travels; the client is who its verified certificate says, until the certificate's
// notAfter, with the permissions the configuration's table gives that identity.
//
// The identity is the certificate's first subjectAltName of type email, DNS or URI, in the
// certificate's order; without one, its subject's (first) CN. docs/security.md.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "framecast/io/server.hpp"
#include "auth.hpp"
#include "permissions.hpp"

typedef struct x509_st X509;

namespace framecast::io {

// The identity `cert` names (empty: none) and its notAfter.
identity certificate_identity(X509* cert);

class cert_authority {
public:
    // Parses opts.cert_permissions. Throws std::runtime_error naming the entry that is wrong.
    explicit cert_authority(const server_options::auth_options& opts);

    // Who the client presenting `cert` (verified by the handshake) is, with its permissions,
    // or why it is refused (no certificate, no identity in it, not in the table and no "*").
    auth_result identify(X509* cert) const;

private:
    // null: no table (everything allowed to every verified certificate).
    std::optional<std::map<std::string, std::shared_ptr<const permissions>, std::less<>>> table_;
};

}  // namespace framecast::io
