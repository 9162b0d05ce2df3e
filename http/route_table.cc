#include "http/route_table.h"

#include <algorithm>

namespace h2loop::http {
namespace {

void addMethod(std::string& allow, std::string_view method) {
  if (method.empty()) return;
  if (allow.find(method) != std::string::npos) return;
  if (!allow.empty()) allow += ", ";
  allow += method;
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
    addMethod(c->allow, r.method);
  }
  std::stable_sort(prefixes_.begin(), prefixes_.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
}

RouteMatch RouteTable::pick(const Candidates& c, std::string_view method) const {
  const auto& routes = router_.routes();
  for (size_t i : c.routes) {
    const Router::Route& r = routes[i];
    if (r.method.empty() || r.method == method) return RouteMatch{&r, i, false, {}};
  }
  return RouteMatch{nullptr, 0, true, c.allow};
}

RouteMatch RouteTable::match(std::string_view method, std::string_view path) const {
  // The most specific path decides: an exact path, else the longest prefix.
  // It has a route for the method, or the answer is 405 with its methods.
  if (auto it = exact_.find(path); it != exact_.end()) return pick(it->second, method);
  for (const auto& [prefix, c] : prefixes_) {
    if (path.starts_with(prefix)) return pick(c, method);
  }
  return RouteMatch{};
}

}  // namespace h2loop::http
