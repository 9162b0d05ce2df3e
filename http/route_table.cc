#include "http/route_table.h"

#include <algorithm>

namespace h2loop::http {
namespace {

void addMethod(std::string& allow, std::string_view method) {
  if (method.empty()) return;
  // Whole names only: "GET" is not in "GET2".
  std::string_view rest = allow;
  while (!rest.empty()) {
    const size_t comma = rest.find(", ");
    if (rest.substr(0, comma) == method) return;
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 2);
  }
  if (!allow.empty()) allow += ", ";
  allow += method;
}

// What a route takes, for `allow`: files and metrics GET and HEAD; a handler
// its method ("" cannot be listed: such a route gets every request itself).
void addRoute(std::string& allow, const Router::Route& r) {
  if (r.kind == Router::Route::Kind::kFiles) {
    addMethod(allow, "GET");
    addMethod(allow, "HEAD");
  } else {
    addMethod(allow, r.method);
  }
}

}  // namespace

RouteTable::RouteTable(Router router) : router_(std::move(router)) {
  const auto& routes = router_.routes();
  for (size_t i = 0; i < routes.size(); ++i) {
    const Router::Route& r = routes[i];
    Candidates* c = nullptr;
    if (!r.is_prefix) {
      c = &exact_[r.path];
    } else {
      auto it = std::find_if(prefixes_.begin(), prefixes_.end(),
                             [&](const auto& p) { return p.first == r.path; });
      if (it == prefixes_.end()) {
        prefixes_.emplace_back(r.path, Candidates{});
        it = prefixes_.end() - 1;
      }
      c = &it->second;
    }
    c->routes.push_back(i);
    addRoute(c->allow, r);
    addRoute(allow_all_, r);
  }
  addMethod(allow_all_, "OPTIONS");
  for (auto& [path, c] : exact_)
    addMethod(c.allow, "OPTIONS");
  for (auto& [path, c] : prefixes_)
    addMethod(c.allow, "OPTIONS");
  std::stable_sort(prefixes_.begin(), prefixes_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

RouteMatch RouteTable::pick(const Candidates& c, std::string_view method) const {
  const auto& routes = router_.routes();
  const bool options = method == "OPTIONS";
  for (size_t i : c.routes) {
    const Router::Route& r = routes[i];
    // A files route takes every method (the file service answers 405 itself),
    // but OPTIONS is the server's, as for the metrics route.
    if (options && r.kind != Router::Route::Kind::kHandler) continue;
    if (r.method.empty() || r.method == method) return RouteMatch{&r, i, false, false, {}};
  }
  if (options) return RouteMatch{nullptr, 0, false, true, c.allow};
  return RouteMatch{nullptr, 0, true, false, c.allow};
}

RouteMatch RouteTable::match(std::string_view method, std::string_view path) const {
  if (path == "*" && method == "OPTIONS") return RouteMatch{nullptr, 0, false, true, allow_all_};
  // The most specific path decides: an exact path, else the longest prefix.
  // It has a route for the method, or the answer is 405 with its methods.
  if (auto it = exact_.find(path); it != exact_.end()) return pick(it->second, method);
  for (const auto& [prefix, c] : prefixes_) {
    if (path.starts_with(prefix)) return pick(c, method);
  }
  return RouteMatch{};
}

const Router::ErrorPage* RouteTable::errorPage(int status) const {
  for (const Router::ErrorPage& p : router_.errorPages()) {
    if (p.status == status) return &p;
  }
  return nullptr;
}

}  // namespace h2loop::http
