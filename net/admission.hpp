// admission: the bounds net/ applies to what it accepts, before any actor
// hears of a connection. The limits are the operator's (serve flags); this
// only counts against them. No sockets and no clock of its own (the time is
// passed in), so it is tested in isolation; thread-safe.
//
// Every admit_* that says yes hands out a ticket; the count it took is given
// back when the ticket is destroyed (or released), so no path that closes a
// connection can forget to give it back.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "protocol/log_throttle.hpp"

namespace tlsrelay::net {

struct admission_limits {
  std::size_t max_connections = 0;            // accepted sockets open at once; 0: no limit
  std::size_t max_handshakes = 0;             // TLS handshakes at once; 0: no limit
  std::size_t max_handshakes_per_source = 0;  // from one address; 0: no limit
  // v2 reverse connections from one address whose first line is not judged
  // yet (each may hold a descriptor up to the accept-line timeout); 0: no limit.
  std::size_t max_unchecked_per_source = 0;
  double client_rate = 0;   // new client connections per second per address; 0: off
  double control_rate = 0;  // new control connections per second per address; 0: off
};

// Why a connection was refused; one summary log line per kind and second.
enum class refusal : std::uint8_t {
  none,
  connections,            // --max-connections reached
  handshakes,             // --max-handshakes reached
  handshakes_per_source,  // --max-handshakes-per-source reached
  unchecked_per_source,   // --max-unchecked-per-source reached
  client_rate,            // --client-rate exceeded
  control_rate,           // --control-rate exceeded
  descriptors,            // out of file descriptors (EMFILE/ENFILE): shed
};
inline constexpr std::size_t refusal_kinds = 8;
std::string_view to_string(refusal r);
// The flag an operator raises to admit more of that kind ("" for none).
std::string_view flag_of(refusal r);
// The kind as a metric label value (tlsrelay_refused_connections_total{reason=...}).
std::string_view label_of(refusal r);

class admission : public std::enable_shared_from_this<admission> {
 public:
  using clock = std::chrono::steady_clock;

  // Gives back what an admission took when destroyed.
  class ticket {
   public:
    ticket() = default;
    ticket(ticket&& other) noexcept { *this = std::move(other); }
    ticket& operator=(ticket&& other) noexcept;
    ~ticket() { release(); }
    explicit operator bool() const { return owner_ != nullptr; }
    void release();

   private:
    friend class admission;
    enum class kind : std::uint8_t { connection, handshake, unchecked };
    std::shared_ptr<admission> owner_;
    kind kind_ = kind::connection;
    std::string source_;
  };

  // Make it shared: tickets keep it alive.
  static std::shared_ptr<admission> make(admission_limits limits);

  // A new control connection from `source`: a connection, a handshake and a
  // token of the control rate. On refusal::none, `connection` and
  // `handshake` hold tickets.
  refusal admit_control(const std::string& source, clock::time_point now, ticket& connection,
                        ticket& handshake);
  // A new client on a public port: a connection and a token of the client rate.
  refusal admit_client(const std::string& source, clock::time_point now, ticket& connection);
  // A new reverse connection: a connection, and with `unchecked` (its first
  // line is still to be read) one of its address's unchecked slots.
  refusal admit_reverse(const std::string& source, bool unchecked, ticket& connection,
                        ticket& unchecked_slot);

  std::size_t connections() const;
  std::size_t handshakes() const;
  const admission_limits& limits() const { return limits_; }

  // Per-address records, for tests: those with a count or a partly used bucket.
  std::size_t tracked_sources() const;

 private:
  explicit admission(admission_limits limits);
  struct bucket {
    double tokens = 0;
    clock::time_point refilled;
  };
  using bucket_map = std::unordered_map<std::string, bucket>;
  using count_map = std::unordered_map<std::string, std::size_t>;

  bool take_token(bucket_map& buckets, double rate, const std::string& source,
                  clock::time_point now);
  ticket make_ticket(ticket::kind k, const std::string& source);
  void give_back(ticket::kind k, const std::string& source);

  const admission_limits limits_;
  mutable std::mutex mutex_;
  std::size_t connections_ = 0;
  std::size_t handshakes_ = 0;
  count_map handshakes_of_;  // by address; entries at 0 are removed
  count_map unchecked_of_;
  bucket_map client_buckets_;  // bounded: see take_token
  bucket_map control_buckets_;
};

// At most one log line per second and kind of refusal (log_throttle each).
class refusal_log {
 public:
  using clock = std::chrono::steady_clock;
  // How many refusals of kind `r` one line should report now (0: stay quiet).
  std::uint64_t note(refusal r, clock::time_point now) { return of(r).note(now); }
  // Refusals kept back whose second is over; reported and cleared. Call about
  // once a second while anything is kept back (has_pending()).
  std::uint64_t take_due(refusal r, clock::time_point now) { return of(r).take_due(now); }
  bool has_pending() const;

 private:
  log_throttle& of(refusal r) { return kinds_[static_cast<std::size_t>(r)]; }
  log_throttle kinds_[refusal_kinds];
};

}  // namespace tlsrelay::net
