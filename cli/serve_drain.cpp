#include "cli/serve_drain.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace tlsrelay::cli {
namespace {

std::atomic<bool> draining{false};

}  // namespace

bool relay_draining() noexcept { return draining.load(std::memory_order_relaxed); }
void mark_draining() noexcept { draining.store(true, std::memory_order_relaxed); }

// An eventfd: written by the actor that reports the end of the drain, polled
// by serve's main thread together with a signalfd for the stop signals.
struct drain_waiter::event {
  event() : fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (fd < 0)
      throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  }
  ~event() { ::close(fd); }
  void notify() const {
    const std::uint64_t one = 1;
    // Cannot fail short of a counter overflow; a lost wake-up would still end
    // at the waiter's limit.
    [[maybe_unused]] const auto n = ::write(fd, &one, sizeof one);
  }
  int fd;
};

drain_waiter::drain_waiter() : event_(std::make_shared<event>()) {}

std::function<void()> drain_waiter::notifier() const {
  return [e = event_] { e->notify(); };
}

drain_waiter::outcome drain_waiter::wait(const sigset_t& signals, std::chrono::milliseconds limit,
                                         int* signal_number) {
  const int sfd = ::signalfd(-1, &signals, SFD_CLOEXEC);
  const auto deadline = std::chrono::steady_clock::now() + limit;
  outcome result = outcome::overdue;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd fds[2] = {{event_->fd, POLLIN, 0}, {sfd, POLLIN, 0}};
    // In slices of at most a minute: poll takes an int of milliseconds.
    const auto slice = std::min<long long>(left.count(), 60'000);
    const int n = ::poll(fds, sfd >= 0 ? 2 : 1, static_cast<int>(slice));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (fds[0].revents & POLLIN) {
      result = outcome::drained;
      break;
    }
    if (sfd >= 0 && (fds[1].revents & POLLIN)) {
      signalfd_siginfo info{};
      if (::read(sfd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        if (signal_number) *signal_number = static_cast<int>(info.ssi_signo);
        result = outcome::signal;
        break;
      }
    }
  }
  if (sfd >= 0) ::close(sfd);
  return result;
}

}  // namespace tlsrelay::cli
