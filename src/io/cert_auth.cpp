#include "cert_auth.hpp"

#include <ctime>
#include <stdexcept>

#include <openssl/asn1.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

namespace framecast::io {
namespace {

std::string asn1_text(const ASN1_STRING* s) {
    if (!s) return {};
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
}

// The first email, DNS or URI subjectAltName, in the certificate's order ("" if none).
std::string first_name_in_san(X509* cert) {
    auto* names = static_cast<GENERAL_NAMES*>(
        X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
    if (!names) return {};
    std::string found;
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && found.empty(); ++i) {
        const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
        if (n->type == GEN_EMAIL || n->type == GEN_DNS || n->type == GEN_URI) {
            found = asn1_text(n->d.ia5);
        }
    }
    GENERAL_NAMES_free(names);
    return found;
}

std::string common_name(X509* cert) {
    const X509_NAME* subject = X509_get_subject_name(cert);
    const int at = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (at < 0) return {};
    return asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, at)));
}

std::chrono::system_clock::time_point not_after(X509* cert) {
    std::tm tm{};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return {};
    return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace

identity certificate_identity(X509* cert) {
    identity who;
    if (!cert) return who;
    who.subject = first_name_in_san(cert);
    if (who.subject.empty()) who.subject = common_name(cert);
    who.expires = not_after(cert);
    return who;
}

cert_authority::cert_authority(const server_options::auth_options& opts) {
    if (!opts.cert_permissions) return;
    table_.emplace();
    for (const auto& [name, json] : *opts.cert_permissions) {
        try {
            table_->emplace(name, parse_permissions(json, "permissions.\"" + name + "\""));
        } catch (const std::invalid_argument& e) {
            throw std::runtime_error(e.what());
        }
    }
}

auth_result cert_authority::identify(X509* cert) const {
    auth_result r;
    r.who = certificate_identity(cert);
    if (!cert) {
        r.error = "no client certificate (--auth cert needs --tls-client-ca)";
        return r;
    }
    if (r.who.subject.empty()) {
        r.error = "the client certificate names nobody (no email, DNS or URI subjectAltName, "
                  "no CN)";
        return r;
    }
    if (r.who.expires == std::chrono::system_clock::time_point{}) {
        r.error = "the client certificate's notAfter cannot be read";
        return r;
    }
    if (table_) {
        auto it = table_->find(r.who.subject);
        if (it == table_->end()) it = table_->find(std::string_view("*"));
        if (it == table_->end()) {
            r.error = "certificate identity '" + escape_controls(r.who.subject, true) +
                      "' is not in the permissions table (and it has no \"*\" entry)";
            return r;
        }
        r.who.grants = it->second;
    }
    r.ok = true;
    return r;
}

}  // namespace framecast::io
