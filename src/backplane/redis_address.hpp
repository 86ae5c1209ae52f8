// Where the Redis backplane is: a redis:// URL parsed (host, port, key, AUTH credentials).
#pragma once

#include <string>

namespace framecast::backplane::redis {

struct redis_address {
    std::string user;      // AUTH user (Redis 6 ACL); empty: the default user
    std::string password;  // empty: no AUTH
    std::string host;
    int port = 6379;
    std::string key = "framecast";
};

// redis://[USER:PASSWORD@|PASSWORD@]HOST[:PORT][/KEY]; throws std::invalid_argument naming
// what is wrong.
redis_address parse_redis_url(const std::string& url);

}  // namespace framecast::backplane::redis
