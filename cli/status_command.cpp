#include "cli/status_command.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "protocol/defaults.hpp"
#include "protocol/endpoint.hpp"

namespace tlsrelay::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct status_options {
  std::string admin{defaults::admin_url};
  std::string token;
  bool json = false;
  bool cluster = false;
};

// http://HOST:PORT[/...] -> host and port; "" or an error.
std::string parse_admin_url(const std::string& url, host_port& out) {
  constexpr std::string_view scheme = "http://";
  if (url.compare(0, scheme.size(), scheme) != 0)
    return "--admin " + url + ": expected http://HOST:PORT (the admin endpoint speaks plain HTTP)";
  auto rest = url.substr(scheme.size());
  rest = rest.substr(0, rest.find('/'));
  if (parse_host_port(rest, out))
    return "--admin " + url + ": expected http://HOST:PORT, e.g. " + std::string(defaults::admin_url);
  return {};
}

struct http_answer {
  unsigned status = 0;
  std::string body;
};

// GET `target` from host:port within `timeout` in all; nullopt and `error`
// set if that failed.
std::optional<http_answer> http_get(const host_port& where, const std::string& target,
                                    const std::string& token, std::chrono::milliseconds timeout,
                                    std::string& error) {
  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::flat_buffer buffer;
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, format_host_port(where));
  req.set(http::field::user_agent, "tlsrelay-status");
  req.set(http::field::connection, "close");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  std::optional<http_answer> answer;
  const auto failed = [&](const char* what, const beast::error_code& ec) {
    error = std::string(what) + ": " +
            (ec == beast::error::timeout ? std::string("timed out") : ec.message());
  };
  stream.expires_after(timeout);
  resolver.async_resolve(
    where.host, std::to_string(where.port),
    [&](const beast::error_code& ec, const tcp::resolver::results_type& results) {
      if (ec) return failed("cannot resolve", ec);
      stream.async_connect(results, [&](const beast::error_code& ec2, const tcp::endpoint&) {
        if (ec2) return failed("cannot connect", ec2);
        http::async_write(stream, req, [&](const beast::error_code& ec3, std::size_t) {
          if (ec3) return failed("cannot send the request", ec3);
          http::async_read(stream, buffer, parser, [&](const beast::error_code& ec4, std::size_t) {
            if (ec4) return failed("no answer", ec4);
            answer = http_answer{parser.get().result_int(), parser.get().body()};
          });
        });
      });
    });
  // The stream's deadline bounds connect, write and read; this bounds the
  // name lookup too.
  io.run_for(timeout + std::chrono::milliseconds(500));
  if (!answer && error.empty()) error = "timed out";
  return answer;
}

std::string shorten(const std::string& text, std::size_t max) {
  if (text.size() <= max) return text;
  return text.substr(0, max - 1) + "~";
}

std::string first_line(std::string text) {
  const auto end = text.find_first_of("\r\n");
  if (end != std::string::npos) text.resize(end);
  return shorten(text, 200);
}

int run_status(const status_options& opt, std::FILE* out) {
  host_port where;
  if (auto err = parse_admin_url(opt.admin, where); !err.empty()) {
    std::fprintf(stderr, "tlsrelay: error: %s\n", err.c_str());
    return 2;
  }
  std::string error;
  const auto answer = http_get(where, "/status", opt.token, defaults::status_command_timeout, error);
  if (!answer) {
    std::fprintf(stderr, "tlsrelay: error: relay admin endpoint %s unreachable: %s\n",
                 opt.admin.c_str(), error.c_str());
    return 1;
  }
  if (answer->status != 200) {
    std::fprintf(stderr, "tlsrelay: error: relay admin endpoint %s answered %u: %s\n",
                 opt.admin.c_str(), answer->status, first_line(answer->body).c_str());
    return 1;
  }
  if (opt.json && !opt.cluster) {
    std::fwrite(answer->body.data(), 1, answer->body.size(), out);
    return 0;
  }
  try {
    std::string text;
    if (opt.cluster) {
      const auto doc = nlohmann::json::parse(answer->body);
      static_cast<void>(doc.at("relay"));  // a /status document, or the catch below says not
      if (!doc.contains("cluster")) {
        std::fprintf(stderr, "tlsrelay: error: the relay at %s is not clustered (it was started "
                     "without --cluster-listen)\n", opt.admin.c_str());
        return status_exit_not_clustered;
      }
      text = opt.json ? doc.at("cluster").dump(2) + "\n" : format_cluster_table(answer->body);
    } else {
      text = format_status_table(answer->body);
    }
    std::fwrite(text.data(), 1, text.size(), out);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tlsrelay: error: relay admin endpoint %s: /status is not what this "
                 "tlsrelay understands: %s\n", opt.admin.c_str(), first_line(e.what()).c_str());
    return 1;
  }
  return 0;
}

// Columns padded to their widest cell.
std::string render_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows)
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace

std::string format_bytes(double bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  std::size_t unit = 0;
  while (bytes >= 1024 && unit + 1 < std::size(units)) {
    bytes /= 1024;
    ++unit;
  }
  char buf[32];
  if (unit == 0)
    std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  else
    std::snprintf(buf, sizeof buf, bytes < 10 ? "%.1f %s" : "%.0f %s", bytes, units[unit]);
  return buf;
}

std::string format_duration(double seconds) {
  const auto s = static_cast<long long>(std::max(0.0, std::floor(seconds)));
  char buf[48];
  if (s >= 86400)
    std::snprintf(buf, sizeof buf, "%lldd %02lldh", s / 86400, (s % 86400) / 3600);
  else if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh %02lldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm %02llds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%llds", s);
  return buf;
}

std::string format_status_table(const std::string& status_json) {
  const auto doc = nlohmann::json::parse(status_json);
  const auto& relay = doc.at("relay");
  const auto& pool = relay.at("pool");
  std::string out;
  char head[512];
  std::snprintf(head, sizeof head,
                "relay %s (%s), up %s, control port %s:%u\n"
                "pool: %u pairs, %u in use, %u free, %u reserved\n",
                relay.at("version").get<std::string>().c_str(),
                relay.at("commit").get<std::string>().c_str(),
                format_duration(relay.at("uptime_seconds").get<double>()).c_str(),
                relay.at("listen_address").get<std::string>().c_str(),
                relay.at("control_port").get<unsigned>(), pool.at("pairs").get<unsigned>(),
                pool.at("in_use").get<unsigned>(), pool.at("free").get<unsigned>(),
                pool.at("reserved").get<unsigned>());
  out += head;
  const auto& sessions = doc.at("sessions");
  if (sessions.empty()) return out + "no sessions\n";
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"ID", "NAME", "V", "IDENTITY", "SERVER", "PUBLIC", "REVERSE", "PAIRS", "WAITING",
                  "WARM", "IN", "OUT", "SINCE"});
  for (const auto& s : sessions) {
    const auto port = [](unsigned p) { return p ? std::to_string(p) : std::string("-"); };
    const auto name = s.at("name").get<std::string>();
    rows.push_back({
      std::to_string(s.at("id").get<std::uint64_t>()),
      name.empty() ? "-" : name,
      std::to_string(s.at("protocol").get<unsigned>()),
      shorten(s.at("identity").get<std::string>(), 24),
      s.at("server").get<std::string>(),
      port(s.at("public_port").get<unsigned>()),
      port(s.at("reverse_port").get<unsigned>()),
      std::to_string(s.at("open_pairs").get<unsigned>()),
      std::to_string(s.at("waiting_clients").get<unsigned>()),
      std::to_string(s.at("warm_connections").get<unsigned>()),
      format_bytes(s.at("bytes_in").get<double>()),
      format_bytes(s.at("bytes_out").get<double>()),
      format_duration(s.at("connected_seconds").get<double>()),
    });
  }
  std::snprintf(head, sizeof head, "%zu session%s (IN: bytes from clients, OUT: bytes to clients)\n",
                sessions.size(), sessions.size() == 1 ? "" : "s");
  return out + head + render_table(rows);
}

std::string format_duration_compact(double seconds) {
  auto text = format_duration(seconds);
  text.erase(std::remove(text.begin(), text.end(), ' '), text.end());
  return text;
}

std::string format_cluster_table(const std::string& status_json) {
  const auto doc = nlohmann::json::parse(status_json);
  const auto& relay = doc.at("relay");
  if (!doc.contains("cluster")) return {};
  const auto& cluster = doc.at("cluster");
  // The relay's clock, not ours: "since" is its own figure.
  const double now_ms = relay.at("started_unix_ms").get<double>() +
                        relay.at("uptime_seconds").get<double>() * 1000.0;
  const auto& members = cluster.at("members");
  std::size_t up = 0, draining = 0, down = 0;
  std::vector<std::vector<std::string>> rows;
  rows.push_back({"NODE", "STATE", "SINCE", "CONTROL", "CLUSTER", "FREE PAIRS", "SESSIONS"});
  for (const auto& m : members) {
    const auto state = m.at("state").get<std::string>();
    ++(state == "up" ? up : state == "draining" ? draining : down);
    // A down node's figures are what it said before it went: not shown.
    const bool known = state != "down";
    rows.push_back({
      m.at("name").get<std::string>() + (m.at("self").get<bool>() ? " (this node)" : ""),
      state,
      format_duration_compact((now_ms - m.at("since_unix_ms").get<double>()) / 1000.0),
      m.at("control_address").get<std::string>(),
      m.at("cluster_address").get<std::string>(),
      known ? std::to_string(m.at("free_pairs").get<std::uint64_t>()) : "-",
      known ? std::to_string(m.at("sessions").get<std::uint64_t>()) : "-",
    });
  }
  const auto names = cluster.at("names").get<std::uint64_t>();
  std::string out = "cluster seen from node " + cluster.at("node").get<std::string>() + ": " +
                    std::to_string(members.size()) + " node" + (members.size() == 1 ? "" : "s") +
                    " (" + std::to_string(up) + " up, " + std::to_string(draining) +
                    " draining, " + std::to_string(down) + " down), " + std::to_string(names) +
                    " name" + (names == 1 ? "" : "s") + " reserved\n";
  out += render_table(rows);
  // The reasons in the order of the metric's help, then any this tlsrelay
  // does not know yet.
  const auto& redirects = cluster.at("redirects");
  std::vector<std::string> order = {"name_elsewhere", "full", "draining"};
  for (const auto& item : redirects.items())
    if (std::find(order.begin(), order.end(), item.key()) == order.end())
      order.push_back(item.key());
  std::string counts;
  for (const auto& reason : order)
    counts += (counts.empty() ? "" : ", ") + reason + " " +
              std::to_string(redirects.value(reason, std::uint64_t{0}));
  out += "redirects sent by this node: " + counts + "\n";
  out += "name conflicts resolved: " +
         std::to_string(cluster.at("conflicts_resolved").get<std::uint64_t>()) + "\n";
  return out;
}

void add_status_command(CLI::App& app, int& exit_code) {
  auto opt = std::make_shared<status_options>();
  auto* cmd = app.add_subcommand(
    "status", "Show what a running relay is doing (asks its admin endpoint, serve --admin)");
  cmd->add_option("--admin", opt->admin, "URL of the relay's admin endpoint")
    ->capture_default_str();
  cmd->add_option("--token", opt->token, "Bearer token of the admin endpoint (serve --admin-token)")
    ->envname("TLSRELAY_ADMIN_TOKEN");
  cmd->add_flag("--json", opt->json,
                "Print the endpoint's /status document unchanged (JSON); with --cluster its "
                "\"cluster\" object");
  cmd->add_flag("--cluster", opt->cluster,
                "Show the relay's cluster instead of its sessions: every node with its state "
                "(up, draining, down) and since when, its control and cluster addresses, free "
                "pairs and sessions; the redirects this node sent and the name conflicts it "
                "resolved");
  cmd->footer(
    "Exit codes: 0 shown; 1 the relay is unreachable or answered an error (one line on stderr "
    "says which); 2 usage; 3 --cluster asked of a relay that is not clustered (started without "
    "--cluster-listen).");
  cmd->callback([opt, &exit_code] { exit_code = run_status(*opt, stdout); });
}

}  // namespace tlsrelay::cli
