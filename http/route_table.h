#pragma once
// Internal: the Router's routes in the form a request is matched against.

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "h2loop/http.h"

namespace h2loop::http {

struct RouteMatch {
  const Router::Route* route = nullptr;  // nullptr: 404, 405 or the server's OPTIONS answer
  size_t index = 0;                      // of the route in Router::routes()
  bool method_not_allowed = false;       // the path matched, no method did: 405
  bool options = false;                  // OPTIONS the server answers: 200 with `allow`
  std::string_view allow;                // for the 405 and OPTIONS: "GET, HEAD, OPTIONS"
};

// Read-only after construction; shared by every worker.
class RouteTable {
 public:
  explicit RouteTable(Router router);

  // `path` without the query. OPTIONS: a route that takes it (method
  // "OPTIONS" or "") decides; else the server answers (options = true) with
  // the path's methods, or 404. `path` "*" (OPTIONS *): every route's methods.
  [[nodiscard]] RouteMatch match(std::string_view method, std::string_view path) const;
  [[nodiscard]] const std::vector<Router::Route>& routes() const { return router_.routes(); }
  [[nodiscard]] bool hasWebSockets() const { return router_.hasWebSockets(); }
  // The custom body for the server's own `status` answer; nullptr: the built-in one.
  [[nodiscard]] const Router::ErrorPage* errorPage(int status) const;

 private:
  struct Candidates {
    std::vector<size_t> routes;  // in registration order
    std::string allow;           // methods of those routes and OPTIONS, for a 405 and OPTIONS
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
  std::string allow_all_;  // OPTIONS *
};

}  // namespace h2loop::http
