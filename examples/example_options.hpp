// Command-line options shared by the examples: where the relay is and how to
// talk to it. Kept small on purpose; `tlsrelay expose` is the full tool.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "client/options.hpp"
#include "protocol/endpoint.hpp"

namespace tlsrelay::examples {

struct relay_arguments {
  std::string relay;
  std::string ca, cert, key, token, name;
  bool insecure = false;
  unsigned protocol = 2;

  void add_to(CLI::App& app) {
    app.add_option("RELAY", relay, "relay control address HOST:PORT")->required();
    app.add_option("--ca", ca, "CA file the relay's certificate must chain to");
    app.add_flag("--insecure", insecure, "do not verify the relay (development only)");
    app.add_option("--cert", cert, "client certificate toward the relay (protocol 1)");
    app.add_option("--key", key, "its private key");
    app.add_option("--protocol", protocol, "1 or 2")->check(CLI::IsMember({1, 2}));
    app.add_option("--token", token, "token (protocol 2)");
    app.add_option("--name", name, "reservation name (protocol 2)");
  }

  // "" or what is wrong.
  std::string to_options(client::listener_options& o) const {
    if (auto ec = parse_host_port(relay, o.relay)) return "RELAY " + relay + ": " + ec.message();
    o.protocol = protocol == 1 ? client::protocol_version::v1 : client::protocol_version::v2;
    if (!ca.empty()) o.tls.ca_file = ca;
    o.tls.insecure = insecure;
    if (!cert.empty()) o.tls.cert_file = cert;
    if (!key.empty()) o.tls.key_file = key;
    o.token = token;
    o.name = name;
    return client::validate(o);
  }
};

}  // namespace tlsrelay::examples
