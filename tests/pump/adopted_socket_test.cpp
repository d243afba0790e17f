// pump::adopt: an Asio socket for a descriptor accept4 made non-blocking and
// this process holds alone, without the ioctl and EPOLL_CTL_DEL Asio spends on
// a descriptor it cannot vouch for. What a caller relies on: asynchronous and
// synchronous reads and writes behave as on any socket, close ends the epoll
// registration (the kernel's doing, for the last descriptor of a file), and
// release hands the still-open descriptor to another io_context.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <future>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "pump/adopted_socket.hpp"
#include "tests/net/peer_io.hpp"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace tlsrelay::test;

// The accepted end of a fresh connection as accept4(SOCK_NONBLOCK) gives it:
// a bare, non-blocking descriptor.
struct accepted {
  unique_fd peer;
  int fd;
};
accepted accept_nonblocking(asio::io_context& io) {
  auto pair = make_tcp_pair(io);
  const int fd = pair.side.release();
  REQUIRE(fd >= 0);
  REQUIRE(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) == 0);
  return {std::move(pair.peer), fd};
}

// accept_nonblocking, then adopted into a socket of `io`.
struct adopted_end {
  unique_fd peer;
  int fd;
  tcp::socket socket;
};
adopted_end adopt_accepted(asio::io_context& io) {
  auto [peer, fd] = accept_nonblocking(io);
  tcp::socket socket(io);
  boost::system::error_code ec;
  tlsrelay::pump::adopt(socket, tcp::v4(), fd, ec);
  REQUIRE_FALSE(ec);
  return {std::move(peer), fd, std::move(socket)};
}

// Adopts `fd` into `socket` as `use` says and leaves a read wait pending in
// the reactor, as an idle pump's socket has.
void adopt_with_pending_wait(asio::io_context& io, tcp::socket& socket, int fd,
                             tlsrelay::pump::descriptor_use use) {
  boost::system::error_code ec;
  tlsrelay::pump::adopt(socket, tcp::v4(), fd, ec, use);
  REQUIRE_FALSE(ec);
  socket.async_wait(tcp::socket::wait_read, [](const boost::system::error_code&) {});
  io.poll();
}

// The inode of the socket behind `fd`, as epoll's fdinfo names its targets.
unsigned long inode_of(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return static_cast<unsigned long>(st.st_ino);
}

// How many of this process's epoll sets have an entry for the file with this
// inode (/proc/self/fdinfo of each eventpoll descriptor lists "ino:<hex>").
int epoll_sets_holding(unsigned long inode) {
  int sets = 0;
  char wanted[32];
  std::snprintf(wanted, sizeof wanted, "ino:%lx ", inode);
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (ec || target.string() != "anon_inode:[eventpoll]") continue;
    std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
    const std::string text((std::istreambuf_iterator<char>(info)), std::istreambuf_iterator<char>());
    if (text.find(wanted) != std::string::npos) ++sets;
  }
  return sets;
}

// Runs `io` until `done` is ready or 5 s pass.
template <class T>
T run_until(asio::io_context& io, std::future<T>& done) {
  const auto deadline = clock::now() + 5s;
  io.restart();
  while (done.wait_for(0s) != std::future_status::ready && clock::now() < deadline)
    io.run_for(10ms);
  REQUIRE(done.wait_for(0s) == std::future_status::ready);
  return done.get();
}

std::string read_async(asio::io_context& io, tcp::socket& socket, std::size_t size) {
  std::promise<std::string> got;
  auto done = got.get_future();
  auto buffer = std::make_shared<std::string>(size, '\0');
  asio::async_read(socket, asio::buffer(*buffer),
                   [&got, buffer](const boost::system::error_code& ec, std::size_t n) {
                     got.set_value(ec ? "error: " + ec.message() : buffer->substr(0, n));
                   });
  return run_until(io, done);
}

}  // namespace

TEST_CASE("adopt: an adopted descriptor reads and writes asynchronously, and closes with an EOF "
          "to its peer",
          "[pump][adopt]") {
  asio::io_context io;
  auto [peer, fd, socket] = adopt_accepted(io);
  REQUIRE(socket.native_handle() == fd);

  REQUIRE(send_all(peer.get(), std::string("ping"), clock::now() + 5s) == 0);
  CHECK(read_async(io, socket, 4) == "ping");

  // More than the socket buffers hold: the write waits for room (EAGAIN and
  // then writability, which Asio asks epoll for) while the peer drains it.
  const auto big = pattern(8 << 20, 7);
  std::promise<boost::system::error_code> wrote;
  auto write_done = wrote.get_future();
  asio::async_write(socket, asio::buffer(big),
                    [&wrote](const boost::system::error_code& e, std::size_t) { wrote.set_value(e); });
  auto reader = std::async(std::launch::async, [&peer = peer, size = big.size()] {
    return read_exact(peer.get(), size, clock::now() + 10s);
  });
  CHECK_FALSE(run_until(io, write_done));
  const auto received = reader.get();
  CHECK(first_difference(received.data, big) == -1);

  socket.close();
  const auto rest = read_to_end(peer.get(), clock::now() + 5s);
  CHECK(rest.eof);
  CHECK(rest.data.empty());
}

TEST_CASE("adopt: closing an adopted socket ends its epoll registration, with a wait pending",
          "[pump][adopt]") {
  asio::io_context io;
  auto [peer, fd] = accept_nonblocking(io);
  const auto inode = inode_of(fd);
  {
    tcp::socket socket(io);
    adopt_with_pending_wait(io, socket, fd, tlsrelay::pump::descriptor_use::ours_alone);
    REQUIRE(epoll_sets_holding(inode) == 1);
  }  // closed here, without EPOLL_CTL_DEL: the kernel drops the entry with the file
  CHECK(epoll_sets_holding(inode) == 0);
  CHECK(read_to_end(peer.get(), clock::now() + 5s).eof);
  // The io_context goes on: the aborted wait completes, nothing else is left.
  io.restart();
  CHECK(io.poll() == 1);
}

TEST_CASE("adopt: a released descriptor stays open and works in another io_context", "[pump][adopt]") {
  asio::io_context one, two;
  auto [peer, fd, first] = adopt_accepted(one);
  boost::system::error_code ec;
  REQUIRE(send_all(peer.get(), std::string("one"), clock::now() + 5s) == 0);
  CHECK(read_async(one, first, 3) == "one");

  const auto inode = inode_of(fd);
  REQUIRE(epoll_sets_holding(inode) == 1);
  const int released = first.release(ec);
  REQUIRE_FALSE(ec);
  REQUIRE(released == fd);
  CHECK(epoll_sets_holding(inode) == 0);  // release takes it out of one's set
  tcp::socket second(two);
  tlsrelay::pump::adopt(second, tcp::v4(), released, ec);
  REQUIRE_FALSE(ec);
  CHECK(epoll_sets_holding(inode) == 1);
  REQUIRE(send_all(peer.get(), std::string("two"), clock::now() + 5s) == 0);
  CHECK(read_async(two, second, 3) == "two");
}

TEST_CASE("adopt: synchronous writes on an adopted socket still block until done", "[pump][adopt]") {
  // Asio's user-visible mode stays blocking: asio::write waits for room
  // (poll) instead of failing with would_block when the buffers are full.
  asio::io_context io;
  auto [peer, fd, socket] = adopt_accepted(io);
  boost::system::error_code ec;
  CHECK_FALSE(socket.non_blocking());
  const auto big = pattern(8 << 20, 11);
  auto reader = std::async(std::launch::async, [&peer = peer, size = big.size()] {
    return read_exact(peer.get(), size, clock::now() + 10s);
  });
  const auto written = asio::write(socket, asio::buffer(big), ec);
  CHECK_FALSE(ec);
  CHECK(written == big.size());
  CHECK(first_difference(reader.get().data, big) == -1);
}

namespace {

using results_type = tcp::resolver::results_type;

results_type endpoints_of(const std::vector<tcp::endpoint>& list) {
  return results_type::create(list.begin(), list.end(), "127.0.0.1", "test");
}

// A loopback port nothing listens on: bound, then closed (refused at once).
tcp::endpoint refusing_endpoint(asio::io_context& io) {
  tcp::acceptor bound(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto at = bound.local_endpoint();
  bound.close();
  return at;
}

struct connect_outcome {
  boost::system::error_code ec;
  tcp::endpoint to;
};

connect_outcome connect_now(asio::io_context& io, tcp::socket& socket, const results_type& to) {
  std::promise<connect_outcome> outcome;
  auto done = outcome.get_future();
  tlsrelay::pump::async_connect(socket, to,
                                [&outcome](const boost::system::error_code& ec,
                                           const tcp::endpoint& at) { outcome.set_value({ec, at}); });
  return run_until(io, done);
}

}  // namespace

TEST_CASE("pump::async_connect connects a non-blocking socket that then carries bytes",
          "[pump][adopt][connect]") {
  asio::io_context io;
  tcp::acceptor listener(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket socket(io);
  const auto outcome = connect_now(io, socket, endpoints_of({listener.local_endpoint()}));
  REQUIRE_FALSE(outcome.ec);
  CHECK(outcome.to == listener.local_endpoint());
  CHECK(socket.remote_endpoint() == listener.local_endpoint());
  CHECK(tlsrelay::pump::known_non_blocking(socket));
  CHECK((::fcntl(socket.native_handle(), F_GETFL) & O_NONBLOCK) != 0);
  CHECK((::fcntl(socket.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);

  tcp::socket accepted = listener.accept();
  asio::write(accepted, asio::buffer(std::string("hello")));
  CHECK(read_async(io, socket, 5) == "hello");
}

TEST_CASE("pump::async_connect tries the endpoints in order and reports the last refusal",
          "[pump][adopt][connect]") {
  asio::io_context io;
  tcp::acceptor listener(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const auto refusing = refusing_endpoint(io);
  tcp::socket socket(io);

  SECTION("a refusing endpoint first, then one that accepts") {
    const auto outcome = connect_now(io, socket, endpoints_of({refusing, listener.local_endpoint()}));
    REQUIRE_FALSE(outcome.ec);
    CHECK(outcome.to == listener.local_endpoint());
    CHECK(socket.is_open());
  }
  SECTION("only refusing endpoints: connection refused, the socket closed") {
    const auto outcome = connect_now(io, socket, endpoints_of({refusing, refusing}));
    CHECK(outcome.ec == asio::error::connection_refused);
    CHECK_FALSE(socket.is_open());
  }
  SECTION("no endpoint: not found") {
    const auto outcome = connect_now(io, socket, endpoints_of({}));
    CHECK(outcome.ec == asio::error::not_found);
  }
}

TEST_CASE("adopt: a descriptor that may be shared leaves the epoll set at close even when a dup "
          "keeps its file open, and one adopted as ours alone would not",
          "[pump][adopt]") {
  asio::io_context io;
  auto [peer, fd] = accept_nonblocking(io);
  const auto inode = inode_of(fd);
  tcp::socket socket(io);
  using tlsrelay::pump::descriptor_use;
  const auto entries_after_close_with_a_dup = [&](descriptor_use use) {
    adopt_with_pending_wait(io, socket, fd, use);
    unique_fd copy(::dup(fd));
    REQUIRE(copy.get() >= 0);
    socket.close();
    return epoll_sets_holding(inode);
  };
  SECTION("may_be_shared: Asio takes it out before close") {
    CHECK(entries_after_close_with_a_dup(descriptor_use::may_be_shared) == 0);
  }
  SECTION("ours_alone, broken by a dup: the entry outlives the socket (why the rule exists)") {
    CHECK(entries_after_close_with_a_dup(descriptor_use::ours_alone) == 1);
  }
}

TEST_CASE("pump::async_connect gives a socket its caller may share: no epoll entry outlives it",
          "[pump][adopt][connect]") {
  asio::io_context io;
  tcp::acceptor listener(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  tcp::socket socket(io);
  REQUIRE_FALSE(connect_now(io, socket, endpoints_of({listener.local_endpoint()})).ec);
  const auto inode = inode_of(socket.native_handle());
  REQUIRE(epoll_sets_holding(inode) == 1);
  unique_fd copy(::dup(socket.native_handle()));
  REQUIRE(copy.get() >= 0);
  socket.close();
  CHECK(epoll_sets_holding(inode) == 0);
}
