// The example programs of examples/ do what their comments promise.
#include <signal.h>

#include <catch2/catch.hpp>

#include "tests/client/client_test_support.hpp"
#include "tests/support/test_data.hpp"

using namespace tlsrelay;
using namespace tlsrelay::test;

namespace {

host_port public_address(child_process& example) {
  const auto line = example.wait_stdout_line("public address ", default_timeout);
  INFO(example.command_line() << "\nstderr: " << example.stderr_text());
  REQUIRE(line.has_value());
  host_port out;
  const auto text = line->substr(std::string("public address ").size());
  REQUIRE_FALSE(parse_host_port(text.substr(0, text.find(' ')), out));
  return out;
}

}  // namespace

SCENARIO("examples: relayed_echo_server echoes through a v1 relay", "[client][examples]") {
  relay_process relay;
  const auto keys = relay.keys_dir();
  child_process example(RELAYED_ECHO_SERVER,
                        {"127.0.0.1:" + std::to_string(relay.port()), "--protocol", "1", "--ca",
                         keys / "ca.crt.pem", "--cert", keys / "client.crt.pem", "--key",
                         keys / "client.key.pem"});
  const auto address = public_address(example);
  CHECK(address.port == relay.public_port(0));
  auto c = test_client::connect(address);
  CHECK(c.exchange("echo, please") == "echo, please");
  c.shutdown_write();
  CHECK(c.recv_until_eof() == "");
  example.signal(SIGTERM);
  CHECK(example.wait_exit(default_timeout) == std::optional<int>(0));
  CHECK(find_sanitizer_output(example.stderr_text()) == "");
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("examples: relayed_echo_server --forward hands each client to a local service",
         "[client][examples]") {
  const std::string pump = GENERATE("splice", "copy");
  INFO("--pump " << pump);
  io_thread io;
  echo_service local(io.io());
  relay_process relay;
  const auto keys = relay.keys_dir();
  child_process example(RELAYED_ECHO_SERVER,
                        {"127.0.0.1:" + std::to_string(relay.port()), "--protocol", "1", "--ca",
                         keys / "ca.crt.pem", "--cert", keys / "client.crt.pem", "--key",
                         keys / "client.key.pem", "--forward",
                         "127.0.0.1:" + std::to_string(local.port()), "--pump", pump});
  const auto address = public_address(example);
  auto c = test_client::connect(address);
  const auto big = random_bytes(3 * 1024 * 1024, 61);  // many pipes' worth
  CHECK(bytes_diff(big, c.exchange(big, 4 * default_timeout)) == "");
  c.shutdown_write();
  CHECK(c.recv_until_eof() == "");
  CHECK(local.accepted() == 1);
  example.signal(SIGTERM);
  CHECK(example.wait_exit(default_timeout) == std::optional<int>(0));
  CHECK(find_sanitizer_output(example.stderr_text()) == "");
  CHECK_STOPS_CLEANLY(relay);
}

SCENARIO("examples: relayed_echo_server --forward names a bad address", "[client][examples]") {
  child_process example(RELAYED_ECHO_SERVER, {"127.0.0.1:1", "--insecure", "--forward", "nowhere"});
  CHECK(example.wait_exit(default_timeout) == std::optional<int>(2));
  CHECK_THAT(example.stderr_text(), Catch::Contains("--forward nowhere"));
}

SCENARIO("examples: relayed_tls_echo_server echoes over end-to-end TLS through a v2 relay",
         "[client][examples][tls]") {
  temp_dir dir;
  relay_options options;
  options.extra_args = {"--tokens", write_file(dir.path(), "tokens", "tok\n").string()};
  relay_process relay(options);
  pki service;
  child_process example(RELAYED_TLS_ECHO_SERVER,
                        {"127.0.0.1:" + std::to_string(relay.port()), "--ca",
                         relay.keys_dir() / "ca.crt.pem", "--token", "tok", "--tls-cert",
                         service.file("server.crt.pem"), "--tls-key",
                         service.file("server.key.pem")});
  const auto address = public_address(example);
  auto c = test_client::connect(address);
  c.start_tls(service.ca(), "127.0.0.1");
  CHECK(c.exchange("echo, privately") == "echo, privately");
  c.shutdown_write();
  CHECK(c.recv_until_eof() == "");
  example.signal(SIGTERM);
  CHECK(example.wait_exit(default_timeout) == std::optional<int>(0));
  CHECK(find_sanitizer_output(example.stderr_text()) == "");
  CHECK_STOPS_CLEANLY(relay);
}
