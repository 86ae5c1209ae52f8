// Boost.JSON, header-only (Debian's libboost1.81-dev has no compiled libboost_json): its
// implementation is compiled here, once. Used by permissions.cpp for the token's claims.
#include <boost/json/src.hpp>
