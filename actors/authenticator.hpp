// authenticator: one per relay node. Decides whether a v2 hello may proceed:
// a token from the --tokens file (compared in constant time, allowed names
// and ports enforced), or a verified client certificate when no tokens are
// configured. Failures are answered late, the later the more an address has
// failed recently, so guessing tokens is slow.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/behavior.hpp>
#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include "protocol/log_throttle.hpp"
#include "protocol/token_file.hpp"

namespace tlsrelay {

struct authenticator_config {
  std::vector<token_entry> tokens;  // empty: no --tokens file
  // Without tokens: may a v2 server without a client certificate proceed?
  // (true only with --client-auth none: the operator chose an open relay.)
  bool open_access = false;
};

struct authenticator_state {
  struct known_token {
    std::string digest;  // SHA-256 of the token, 32 bytes
    std::string owner;   // hex of the digest: the owner of its reservations
    std::vector<std::string> names;
    std::vector<std::uint16_t> ports;
  };
  struct failure_record {
    unsigned count = 0;
    std::chrono::steady_clock::time_point last;
  };

  std::vector<known_token> tokens;
  bool open_access = false;
  std::unordered_map<std::string, failure_record> failures;  // by peer host, bounded
  std::unordered_map<std::uint64_t, std::pair<caf::response_promise, std::string>> delayed;
  std::uint64_t next_delay_key = 0;
  log_throttle failure_log;  // one log line a second

  static inline const char* name = "authenticator";
};

caf::behavior authenticator(caf::stateful_actor<authenticator_state>* self,
                            authenticator_config config);

// The delay before answering a failure, after `failures` recent ones.
std::chrono::milliseconds auth_failure_delay(unsigned failures);

}  // namespace tlsrelay
