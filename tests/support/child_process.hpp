// A program run by a test: started with fork/execv, stdout and stderr
// captured through pipes by a reader thread (so a chatty child never blocks
// on a full pipe), exit observed through a pidfd. Every wait has a deadline.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/support/socket_io.hpp"

namespace tlsrelay::test {

class child_process {
 public:
  // Starts `program` (a path, or a name looked up in PATH) with `args`
  // (argv[1]...). stdin is /dev/null. The child is SIGKILLed if the calling
  // thread ends first (so a killed test leaves no daemon behind): create it
  // from a thread that outlives it. Throws io_error if it cannot start.
  child_process(std::string program, std::vector<std::string> args);
  // Kills the child with SIGKILL (by its own PID, only if not yet reaped),
  // reaps it and stops the reader thread.
  ~child_process();
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const { return pid_; }
  // "program arg1 arg2 ...", for messages.
  const std::string& command_line() const { return command_line_; }

  std::string stdout_text() const;
  std::string stderr_text() const;

  // Waits until the child has printed a complete stdout line that begins
  // with `prefix` and returns it (without the line end). nullopt if the
  // deadline passes or the child exits first (see exit_code()).
  std::optional<std::string> wait_stdout_line(std::string_view prefix, millis timeout);

  // Waits for the child to end. Its exit code, or 128 + signal number if a
  // signal killed it; nullopt if it is still running at the deadline.
  std::optional<int> wait_exit(millis timeout);
  // The exit code if the child has already ended (same encoding).
  std::optional<int> exit_code() const;
  bool running() const { return !exit_code().has_value(); }

  // Sends `sig` to the child if it has not been reaped yet.
  void signal(int sig);
  // SIGKILL and reap.
  void kill();

 private:
  void read_loop();
  void try_reap_locked();

  pid_t pid_ = -1;
  std::string command_line_;
  unique_fd out_pipe_, err_pipe_, pidfd_, wake_read_, wake_write_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string out_, err_;
  bool out_eof_ = false, err_eof_ = false;
  std::optional<int> status_;  // set once reaped
  std::thread reader_;
};

}  // namespace tlsrelay::test
