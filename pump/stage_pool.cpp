#include "pump/stage_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "protocol/defaults.hpp"

namespace tlsrelay::pump {
namespace {

void close_pipe(stage_pool::pipe_ends& p) {
  if (p.read >= 0) ::close(p.read);
  if (p.write >= 0) ::close(p.write);
  p = {};
}

}  // namespace

stage_pool::stage_pool(std::size_t max_idle) : max_idle_(max_idle) {}

stage_pool::~stage_pool() {
  for (auto& p : idle_pipes_) close_pipe(p);
}

stage_pool::pipe_ends stage_pool::take_pipe() {
  std::lock_guard<std::mutex> lock(mutex_);
  pipe_ends p;
  if (!idle_pipes_.empty()) {
    p = idle_pipes_.back();
    idle_pipes_.pop_back();
  } else {
    int fds[2];
    if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return {};
    p = {fds[0], fds[1]};
    // The pipe is the read-ahead bound of a direction; make it exactly that.
    ::fcntl(p.write, F_SETPIPE_SZ, static_cast<int>(defaults::pump_buffer_bytes));
  }
  ++pipes_in_use_;
  ++stages_taken_;
  return p;
}

void stage_pool::give_back(pipe_ends pipe, bool empty) {
  if (!pipe) return;
  std::lock_guard<std::mutex> lock(mutex_);
  --pipes_in_use_;
  // A pipe with bytes left in it would hand them to the next pair.
  if (empty && idle_pipes_.size() < max_idle_)
    idle_pipes_.push_back(pipe);
  else
    close_pipe(pipe);
}

std::size_t stage_pool::release_idle_pipes() {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto released = idle_pipes_.size();
  for (auto& p : idle_pipes_) close_pipe(p);
  idle_pipes_.clear();
  return released;
}

std::unique_ptr<char[]> stage_pool::take_buffer() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++buffers_in_use_;
  ++stages_taken_;
  if (idle_buffers_.empty()) return std::make_unique<char[]>(defaults::pump_buffer_bytes);
  auto b = std::move(idle_buffers_.back());
  idle_buffers_.pop_back();
  return b;
}

void stage_pool::give_back(std::unique_ptr<char[]> buffer) {
  if (!buffer) return;
  std::lock_guard<std::mutex> lock(mutex_);
  --buffers_in_use_;
  if (idle_buffers_.size() < max_idle_) idle_buffers_.push_back(std::move(buffer));
}

std::size_t stage_pool::pipes_in_use() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pipes_in_use_;
}

std::size_t stage_pool::buffers_in_use() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return buffers_in_use_;
}

std::size_t stage_pool::idle_pipes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return idle_pipes_.size();
}

std::uint64_t stage_pool::stages_taken() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stages_taken_;
}

}  // namespace tlsrelay::pump
