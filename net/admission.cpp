#include "net/admission.hpp"

#include <algorithm>

namespace tlsrelay::net {

namespace {

// Rate records kept at most; past it, buckets that have refilled are
// forgotten, and if none has, a new address is not tracked (admitted): an
// attacker with that many addresses is not stopped by a per-address rate
// anyway, and the table must not grow with it.
constexpr std::size_t max_buckets = 16384;

bool over(std::size_t count, std::size_t limit) { return limit != 0 && count >= limit; }

}  // namespace

std::string_view to_string(refusal r) {
  switch (r) {
    case refusal::none: return "admitted";
    case refusal::connections: return "connection limit reached";
    case refusal::handshakes: return "TLS handshake limit reached";
    case refusal::handshakes_per_source: return "TLS handshakes of one address at their limit";
    case refusal::unchecked_per_source:
      return "reverse connections of one address awaiting their first line at their limit";
    case refusal::client_rate: return "client connection rate of one address exceeded";
    case refusal::control_rate: return "control connection rate of one address exceeded";
    case refusal::descriptors: return "out of file descriptors, connection shed";
  }
  return "?";
}

std::string_view flag_of(refusal r) {
  switch (r) {
    case refusal::connections: return "--max-connections";
    case refusal::handshakes: return "--max-handshakes";
    case refusal::handshakes_per_source: return "--max-handshakes-per-source";
    case refusal::unchecked_per_source: return "--max-unchecked-per-source";
    case refusal::client_rate: return "--client-rate";
    case refusal::control_rate: return "--control-rate";
    case refusal::descriptors: return "ulimit -n";
    case refusal::none: return "";
  }
  return "";
}

std::string_view label_of(refusal r) {
  switch (r) {
    case refusal::connections: return "max_connections";
    case refusal::handshakes: return "max_handshakes";
    case refusal::handshakes_per_source: return "max_handshakes_per_source";
    case refusal::unchecked_per_source: return "max_unchecked_per_source";
    case refusal::client_rate: return "client_rate";
    case refusal::control_rate: return "control_rate";
    case refusal::descriptors: return "descriptors";
    case refusal::none: return "none";
  }
  return "none";
}

// -- ticket ------------------------------------------------------------------------

admission::ticket& admission::ticket::operator=(ticket&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::move(other.owner_);
    kind_ = other.kind_;
    source_ = std::move(other.source_);
    other.owner_ = nullptr;
  }
  return *this;
}

void admission::ticket::release() {
  if (!owner_) return;
  owner_->give_back(kind_, source_);
  owner_ = nullptr;
}

// -- admission ---------------------------------------------------------------------

std::shared_ptr<admission> admission::make(admission_limits limits) {
  return std::shared_ptr<admission>(new admission(limits));
}

admission::admission(admission_limits limits) : limits_(limits) {}

admission::ticket admission::make_ticket(ticket::kind k, const std::string& source) {
  ticket t;
  t.owner_ = shared_from_this();
  t.kind_ = k;
  if (k != ticket::kind::connection) t.source_ = source;
  return t;
}

void admission::give_back(ticket::kind k, const std::string& source) {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto decrement = [&](count_map& counts) {
    auto it = counts.find(source);
    if (it != counts.end() && --it->second == 0) counts.erase(it);
  };
  switch (k) {
    case ticket::kind::connection: --connections_; break;
    case ticket::kind::handshake:
      --handshakes_;
      decrement(handshakes_of_);
      break;
    case ticket::kind::unchecked: decrement(unchecked_of_); break;
  }
}

bool admission::take_token(bucket_map& buckets, double rate, const std::string& source,
                           clock::time_point now) {
  if (rate <= 0) return true;
  // A burst of twice the rate (at least one): a client that opens a few
  // connections at once is not refused.
  const double burst = std::max(1.0, 2 * rate);
  const auto refill = [&](bucket& b) {
    const std::chrono::duration<double> elapsed = now - b.refilled;
    b.tokens = std::min(burst, b.tokens + elapsed.count() * rate);
    b.refilled = now;
  };
  auto it = buckets.find(source);
  if (it == buckets.end()) {
    if (buckets.size() >= max_buckets) {
      for (auto b = buckets.begin(); b != buckets.end();) {
        refill(b->second);
        b = b->second.tokens >= burst ? buckets.erase(b) : std::next(b);
      }
      if (buckets.size() >= max_buckets) return true;
    }
    it = buckets.emplace(source, bucket{burst, now}).first;
  } else {
    refill(it->second);
  }
  if (it->second.tokens < 1) return false;
  it->second.tokens -= 1;
  return true;
}

refusal admission::admit_control(const std::string& source, clock::time_point now,
                                 ticket& connection, ticket& handshake) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (over(connections_, limits_.max_connections)) return refusal::connections;
    if (over(handshakes_, limits_.max_handshakes)) return refusal::handshakes;
    auto it = handshakes_of_.find(source);
    if (it != handshakes_of_.end() && over(it->second, limits_.max_handshakes_per_source))
      return refusal::handshakes_per_source;
    if (!take_token(control_buckets_, limits_.control_rate, source, now))
      return refusal::control_rate;
    ++connections_;
    ++handshakes_;
    ++handshakes_of_[source];
  }
  connection = make_ticket(ticket::kind::connection, source);
  handshake = make_ticket(ticket::kind::handshake, source);
  return refusal::none;
}

refusal admission::admit_client(const std::string& source, clock::time_point now,
                                ticket& connection) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (over(connections_, limits_.max_connections)) return refusal::connections;
    if (!take_token(client_buckets_, limits_.client_rate, source, now))
      return refusal::client_rate;
    ++connections_;
  }
  connection = make_ticket(ticket::kind::connection, source);
  return refusal::none;
}

refusal admission::admit_reverse(const std::string& source, bool unchecked, ticket& connection,
                                 ticket& unchecked_slot) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (over(connections_, limits_.max_connections)) return refusal::connections;
    if (unchecked) {
      auto it = unchecked_of_.find(source);
      if (it != unchecked_of_.end() && over(it->second, limits_.max_unchecked_per_source))
        return refusal::unchecked_per_source;
      ++unchecked_of_[source];
    }
    ++connections_;
  }
  connection = make_ticket(ticket::kind::connection, source);
  if (unchecked) unchecked_slot = make_ticket(ticket::kind::unchecked, source);
  return refusal::none;
}

std::size_t admission::connections() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return connections_;
}

std::size_t admission::handshakes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return handshakes_;
}

std::size_t admission::tracked_sources() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return handshakes_of_.size() + unchecked_of_.size() + client_buckets_.size() +
         control_buckets_.size();
}

// -- refusal_log -------------------------------------------------------------------

bool refusal_log::has_pending() const {
  return std::any_of(std::begin(kinds_), std::end(kinds_),
                     [](const log_throttle& t) { return t.has_pending(); });
}

}  // namespace tlsrelay::net
