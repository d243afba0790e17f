// Command-line options shared by the examples: where the relay is and how to
// talk to it. Kept small on purpose; `tlsrelay expose` is the full tool.
#pragma once

#include <cstdio>
#include <exception>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <CLI/CLI.hpp>

#include "client/options.hpp"
#include "client/relay_listener.hpp"
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

// Listens through the relay, prints the public address ("public address
// HOST:PORT" + note), hands every relayed connection to `accept_next`'s chain,
// and runs until SIGINT/SIGTERM (0) or a failed first connection (1).
template <class AcceptNext>
int serve_until_signal(const char* program, const char* note, const client::listener_options& options,
                       AcceptNext accept_next) {
  boost::asio::io_context io;
  try {
    client::relay_listener listener(io, options);
    listener.set_event_handler([note](const client::listener_event& ev) {
      if (ev.what != client::listener_event::kind::listening) return;
      std::printf("public address %s%s\n", format_host_port(ev.session.public_endpoint).c_str(),
                  note);
      std::fflush(stdout);
    });
    int exit_code = 0;
    listener.async_listen([&](std::error_code ec, const client::session_info&) {
      if (!ec) return;
      std::fprintf(stderr, "%s: %s: %s\n", program, ec.message().c_str(),
                   listener.last_error_detail().c_str());
      exit_code = 1;
      io.stop();
    });
    accept_next(listener);
    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
    io.run();
    return exit_code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 2;
  }
}

}  // namespace tlsrelay::examples
