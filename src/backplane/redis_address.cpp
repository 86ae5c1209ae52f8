#include "redis_address.hpp"

#include <stdexcept>

namespace framecast::backplane::redis {

redis_address parse_redis_url(const std::string& url) {
    const std::string scheme = "redis://";
    if (url.rfind(scheme, 0) != 0) {
        throw std::invalid_argument("backplane URL '" + url + "' must start with redis://");
    }
    redis_address a;
    std::string rest = url.substr(scheme.size());
    auto slash = rest.find('/');
    std::string hostport = rest.substr(0, slash);
    if (slash != std::string::npos && slash + 1 < rest.size()) a.key = rest.substr(slash + 1);
    if (auto at = hostport.rfind('@'); at != std::string::npos) {
        std::string userinfo = hostport.substr(0, at);
        hostport = hostport.substr(at + 1);
        if (auto colon = userinfo.find(':'); colon != std::string::npos) {
            a.user = userinfo.substr(0, colon);
            a.password = userinfo.substr(colon + 1);
        } else {
            a.password = userinfo;
        }
        if (a.password.empty()) {
            throw std::invalid_argument("backplane URL: empty password before '@'");
        }
    }
    std::string port;
    if (!hostport.empty() && hostport.front() == '[') {
        auto close = hostport.find(']');
        if (close == std::string::npos) throw std::invalid_argument("backplane URL '" + url + "': unclosed [");
        a.host = hostport.substr(1, close - 1);
        if (close + 1 < hostport.size() && hostport[close + 1] == ':') port = hostport.substr(close + 2);
    } else if (auto colon = hostport.rfind(':'); colon != std::string::npos) {
        a.host = hostport.substr(0, colon);
        port = hostport.substr(colon + 1);
    } else {
        a.host = hostport;
    }
    if (a.host.empty()) throw std::invalid_argument("backplane URL '" + url + "' names no host");
    if (!port.empty()) {
        std::size_t used = 0;
        int p = -1;
        try {
            p = std::stoi(port, &used);
        } catch (const std::exception&) {
        }
        if (used != port.size() || p < 1 || p > 65535) {
            throw std::invalid_argument("backplane URL '" + url + "': port must be 1 to 65535");
        }
        a.port = p;
    }
    return a;
}

}  // namespace framecast::backplane::redis
