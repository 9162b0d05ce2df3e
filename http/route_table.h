#pragma once
// Internal: the Router's routes in the form a request is matched against.

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "h2loop/http.h"

namespace h2loop::http {

struct RouteMatch {
  const Router::Route* route = nullptr;  // nullptr: 404 or 405
  size_t index = 0;                      // of the route in Router::routes()
  bool method_not_allowed = false;       // the path matched, no method did: 405
  std::string_view allow;                // for the 405: "GET, HEAD"
};

// Read-only after construction; shared by every worker.
class RouteTable {
 public:
  explicit RouteTable(Router router);

  // `path` without the query.
  [[nodiscard]] RouteMatch match(std::string_view method, std::string_view path) const;
  [[nodiscard]] const std::vector<Router::Route>& routes() const { return router_.routes(); }
  [[nodiscard]] bool hasWebSockets() const { return router_.hasWebSockets(); }

 private:
  struct Candidates {
    std::vector<size_t> routes;  // in registration order
    std::string allow;           // methods of those routes, for a 405
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  RouteMatch pick(const Candidates& c, std::string_view method) const;

  Router router_;
  std::unordered_map<std::string, Candidates, Hash, std::equal_to<>> exact_;
  // Longest prefix first.
  std::vector<std::pair<std::string, Candidates>> prefixes_;
};

}  // namespace h2loop::http
