#include "tests/support/child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace tlsrelay::test {
namespace {

std::pair<unique_fd, unique_fd> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw io_error(std::string("pipe2(): ") + std::strerror(errno));
  return {unique_fd(fds[0]), unique_fd(fds[1])};
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// `program` if it contains a '/', else its first executable match in $PATH
// (resolved before fork: the child may only make async-signal-safe calls).
std::string resolve_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return program;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  for (std::size_t start = 0; start <= dirs.size();) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = end > start ? dirs.substr(start, end - start) : ".";
    const std::string candidate = dir + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return program;  // execv fails with ENOENT, reported by the constructor
}

// Runs in the forked child: only async-signal-safe calls. Reports a failure
// as its errno through `report` (close-on-exec, so a successful exec closes
// it without a byte).
[[noreturn]] void exec_child(const char* path, char* const* argv, int out, int err, int report,
                             pid_t parent) {
  int error = 0;
  // Dies with the test process (even SIGKILLed by a ctest timeout) instead
  // of holding its ports forever. The signal is tied to the thread that
  // forked: spawn from a thread that outlives the child.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) error = errno;
  if (error == 0 && ::getppid() != parent) ::_exit(127);  // the parent is already gone
  // The test process ignores SIGPIPE and may block signals; the child starts
  // with default dispositions and an empty mask, as if from a shell.
  struct sigaction default_action {};
  default_action.sa_handler = SIG_DFL;
  for (const int sig : {SIGPIPE, SIGINT, SIGTERM, SIGCHLD}) ::sigaction(sig, &default_action, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (error == 0 && (null < 0 || ::dup2(null, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0))
    error = errno;
  if (error == 0) {
    ::execv(path, argv);
    error = errno;
  }
  [[maybe_unused]] const ssize_t ignored = ::write(report, &error, sizeof error);
  ::_exit(127);
}

}  // namespace

child_process::child_process(std::string program, std::vector<std::string> args) {
  command_line_ = program;
  for (const auto& a : args) command_line_ += " " + a;
  const std::string path = resolve_program(program);

  auto [out_read, out_write] = make_pipe();
  auto [err_read, err_write] = make_pipe();
  auto [wake_read, wake_write] = make_pipe();
  auto [report_read, report_write] = make_pipe();

  std::vector<char*> argv;
  argv.push_back(program.data());
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw io_error("cannot start " + command_line_ + ": fork(): " + std::strerror(errno));
  if (pid_ == 0)
    exec_child(path.c_str(), argv.data(), out_write.get(), err_write.get(), report_write.get(),
               parent);

  out_write.reset();
  err_write.reset();
  report_write.reset();
  int exec_error = 0;
  ssize_t got;
  do {
    got = ::read(report_read.get(), &exec_error, sizeof exec_error);
  } while (got < 0 && errno == EINTR);
  if (got > 0) {
    int status;
    ::waitpid(pid_, &status, 0);
    throw io_error("cannot start " + command_line_ + ": " + std::strerror(exec_error));
  }

  out_pipe_ = std::move(out_read);
  err_pipe_ = std::move(err_read);
  wake_read_ = std::move(wake_read);
  wake_write_ = std::move(wake_write);
  // A pidfd turns "the child exited" into a poll event; without one (old
  // kernel) the reader thread falls back to checking every 20 ms.
  pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
  reader_ = std::thread([this] { read_loop(); });
}

child_process::~child_process() {
  kill();
  {
    std::unique_lock lock(mutex_);
    // SIGKILL cannot be ignored; the bound only guards against a stuck reader.
    changed_.wait_for(lock, 10s, [this] { return status_.has_value(); });
  }
  const char byte = 'x';
  [[maybe_unused]] const ssize_t ignored = ::write(wake_write_.get(), &byte, 1);
  if (reader_.joinable()) reader_.join();
}

void child_process::try_reap_locked() {
  if (status_) return;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(status);
  } else if (r < 0 && errno == ECHILD) {
    status_ = -1;  // reaped elsewhere: nothing more to learn
  }
}

void child_process::read_loop() {
  char chunk[16 * 1024];
  for (;;) {
    pollfd fds[4] = {{out_pipe_.get(), POLLIN, 0},
                     {err_pipe_.get(), POLLIN, 0},
                     {pidfd_.get(), POLLIN, 0},
                     {wake_read_.get(), POLLIN, 0}};
    bool reaped;
    {
      std::lock_guard lock(mutex_);
      if (out_eof_) fds[0].fd = -1;
      if (err_eof_) fds[1].fd = -1;
      reaped = status_.has_value();
      if (reaped) fds[2].fd = -1;
      if (reaped && out_eof_ && err_eof_) return;
    }
    const int timeout = (!reaped && !pidfd_) ? 20 : -1;
    const int n = ::poll(fds, 4, timeout);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return;
    if (fds[3].revents) return;  // the destructor wants us gone
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t got = ::read(fds[i].fd, chunk, sizeof chunk);
      std::lock_guard lock(mutex_);
      if (got > 0) {
        (i == 0 ? out_ : err_).append(chunk, static_cast<std::size_t>(got));
      } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
        (i == 0 ? out_eof_ : err_eof_) = true;
      }
      changed_.notify_all();
    }
    if (fds[2].revents || (!reaped && !pidfd_)) {
      std::lock_guard lock(mutex_);
      try_reap_locked();
      changed_.notify_all();
    }
  }
}

std::string child_process::stdout_text() const {
  std::lock_guard lock(mutex_);
  return out_;
}

std::string child_process::stderr_text() const {
  std::lock_guard lock(mutex_);
  return err_;
}

std::optional<std::string> child_process::wait_stdout_line(std::string_view prefix,
                                                           millis timeout) {
  std::unique_lock lock(mutex_);
  std::optional<std::string> found;
  const auto search = [&] {
    std::size_t start = 0;
    for (std::size_t end; (end = out_.find('\n', start)) != std::string::npos; start = end + 1) {
      std::string_view line(out_.data() + start, end - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.substr(0, prefix.size()) == prefix) {
        found = std::string(line);
        return true;
      }
    }
    // Exited, and everything it printed has been read: it will not come.
    return status_.has_value() && out_eof_;
  };
  changed_.wait_for(lock, timeout, search);
  return found;
}

std::optional<int> child_process::wait_exit(millis timeout) {
  const auto deadline = steady::now() + timeout;
  std::unique_lock lock(mutex_);
  if (!changed_.wait_until(lock, deadline, [this] { return status_.has_value(); }))
    return std::nullopt;
  // Let the reader drain what the child wrote just before exiting, so that
  // stderr_text() is complete; bounded in case a grandchild holds the pipes.
  changed_.wait_for(lock, 1s, [this] { return out_eof_ && err_eof_; });
  return status_;
}

std::optional<int> child_process::exit_code() const {
  std::lock_guard lock(mutex_);
  return status_;
}

void child_process::signal(int sig) {
  std::lock_guard lock(mutex_);
  // Until we reap it the PID cannot be reused, so this reaches our child only.
  if (!status_) ::kill(pid_, sig);
}

void child_process::kill() {
  signal(SIGKILL);
  wait_exit(10s);
}

}  // namespace tlsrelay::test
